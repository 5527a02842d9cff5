//! cgroup v1 and v2 behind one interface.
