//! `approuter logs`: tails and follows real logs written by `approuter svlogd`.
