"""Virtual nodes: qemu machines that boot from the cluster network, and their Wake-on-LAN listener."""
