//! glommio direct-I/O driver (to be written).
