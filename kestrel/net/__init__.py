"""Network plumbing: namespaces, bridges, veths and taps, and the VXLAN switch that joins servers."""
