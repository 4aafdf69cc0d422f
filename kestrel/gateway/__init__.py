"""The gateway module: a load balancer on the frontend (HAProxy or nginx) over the web servers of a node group."""
