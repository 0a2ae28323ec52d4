#![no_main]

//! `Master::handle` driven by scripts of datagrams from a few addresses with time advancing, over
//! two shards steered as the engine steers them; every step checks the master's invariants (see
//! `muster::master::invariants`).

use libfuzzer_sys::fuzz_target;
use muster::master::invariants;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = invariants::run(data) {
        panic!("invariant broken: {violation}");
    }
});
