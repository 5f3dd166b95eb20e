//! The upstream client against raw-socket stand-in upstreams.

use super::*;
