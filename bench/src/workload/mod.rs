//! The workloads of the load generator, one per file, each a
//! [`Workload`](crate::driver::Workload) (plus setup and teardown where the
//! workload needs it: leases, watch streams, seed data).

pub mod kubernetes;
pub mod lease;
pub mod mixed;
pub mod put;
pub mod range;
pub mod recording;
pub mod txn_put;
pub mod watch;

use bytes::Bytes;

use crate::cli::LoadArgs;
use crate::driver::Plan;
use crate::keys::{KeyGen, Rng, random_value};

/// The key generator `args` describe.
pub fn keygen(args: &LoadArgs) -> KeyGen {
    KeyGen::new(&args.prefix, args.key_size, args.key_space_size, args.sequential_keys)
}

/// The value every request of a run writes.
pub fn value(args: &LoadArgs) -> Bytes {
    random_value(args.val_size, &mut Rng::new(0xda7a))
}

/// The load plan `args` describe.
pub fn plan(args: &LoadArgs, label: &str) -> Plan {
    Plan {
        clients: args.clients,
        total: args.total,
        duration: args.duration,
        rate: args.rate,
        progress: !args.quiet,
        label: label.to_owned(),
    }
}
