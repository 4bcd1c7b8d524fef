#!/bin/sh
# Make this container's own host key (unless it has one), let $AUTHORIZED_KEY in as root, ops
# and plain, and run sshd in the foreground (its log on stderr: `docker logs`).
set -eu
[ -e /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
for home in /root /home/ops /home/plain; do
    user="$(basename "$home")"; [ "$home" = /root ] && user=root
    mkdir -p "$home/.ssh"
    printf '%s\n' "${AUTHORIZED_KEY:?set AUTHORIZED_KEY to the client public key}" >"$home/.ssh/authorized_keys"
    chmod 700 "$home/.ssh"; chmod 600 "$home/.ssh/authorized_keys"
    chown -R "$user:$user" "$home/.ssh"
done
exec /usr/sbin/sshd -D -e
