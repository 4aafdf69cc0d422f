"""Operations: the cluster's status (boot stages, liveness, versions), its page, and the monitor that keeps both."""
