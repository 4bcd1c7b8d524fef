"""The Multi-Paxos key-value node under test (standard library only)."""
