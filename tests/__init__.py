

def sigint_as_in_a_terminal() -> None:
    """A Popen preexec_fn: Ctrl-C's default action in the child, as from a terminal. A shell's
    background job (a CI started with `&`) inherits SIGINT ignored, and Python, as POSIX
    asks, then keeps ignoring it: a test that interrupts a run would wait in vain."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
