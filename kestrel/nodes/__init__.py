"""Nodes as data and over the wire: the registry, DHCP leases, learned state, hostfiles, SSH fan-out, Wake-on-LAN."""
