"""The lab: a whole cluster on one machine, in a network namespace, run from its own --root tree."""
