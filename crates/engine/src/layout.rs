//! Paths inside the data directory.
