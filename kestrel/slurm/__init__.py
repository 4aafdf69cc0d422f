"""The slurm module: slurmctld and munge on the frontend, configless dynamic slurmd on the nodes."""
