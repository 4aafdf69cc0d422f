"""Cluster users: the users list, accounts and homes, SSH keys, known_hosts, and the root-access rule."""
