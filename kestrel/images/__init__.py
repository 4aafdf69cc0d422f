"""Node images: definitions, bootstrap, phase scripts, chroot, copy-on-write versions, build, publish, apt."""
