//! Robustness: a 3-member cluster under crashes, power loss, pauses and partitions, with
//! concurrent clients whose history is then checked (linearizability per key, revisions
//! in real-time order, every read against the committed history, no acknowledged write
//! lost, HashKV equal on all members, watches when the service answers).
//!
//! The scenarios need the `failpoints` build (peer route overrides for the link proxies,
//! power loss): `cargo test --features failpoints --test robustness`. Without it only the
//! checker's own tests run. Long soaks: `scripts/robustness.sh --minutes N --seed S`.

mod common;

#[path = "robustness/checks.rs"]
mod checks;
#[path = "robustness/history.rs"]
mod history;
#[path = "robustness/linearizability.rs"]
mod linearizability;
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
#[path = "robustness/proxy.rs"]
mod proxy;
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
#[path = "robustness/scenario.rs"]
mod scenario;
#[path = "robustness/workload.rs"]
mod workload;

#[cfg(feature = "failpoints")]
mod scenarios {
    use std::time::Duration;

    use super::scenario::{self, ALL_FAULTS, Fault, Spec};

    /// The seed: `LOGBOOK_ROBUSTNESS_SEED` to replay, else fresh (and printed).
    fn seed() -> u64 {
        match std::env::var("LOGBOOK_ROBUSTNESS_SEED") {
            Ok(s) => s.parse().expect("LOGBOOK_ROBUSTNESS_SEED must be a number"),
            Err(_) => {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    % 1_000_000_007
            }
        }
    }

    fn run(name: &str, faults: &[Fault], power_loss: bool, secs: u64) {
        let spec = Spec {
            name: name.into(),
            faults: faults.to_vec(),
            duration: Duration::from_secs(secs),
            power_loss,
            seed: seed(),
            clients_per_member: 2,
        };
        let report = scenario::run(&spec);
        println!("{}", report.summary());
        assert!(report.ops_ok > 100, "too few operations succeeded: {}", report.summary());
        assert!(
            report.anomalies.is_empty(),
            "{} anomalies (replay with LOGBOOK_ROBUSTNESS_SEED={}):\n{}",
            report.anomalies.len(),
            spec.seed,
            report.anomalies.join("\n")
        );
    }

    #[test]
    fn ci_crashes_and_pauses() {
        run("crashes-and-pauses", &[Fault::Kill, Fault::Pause], false, 25);
    }

    #[test]
    fn ci_partitions() {
        run(
            "partitions",
            &[
                Fault::IsolateLeader,
                Fault::LeaderCannotSend,
                Fault::LeaderCannotHear,
                Fault::Blackhole,
                Fault::Delay,
            ],
            false,
            25,
        );
    }

    #[test]
    #[ignore = "hung once (seed 12, after the 5th power cut; cause not yet found); run it by name"]
    fn ci_power_loss() {
        run("power-loss", &[Fault::Kill], true, 20);
    }

    /// The soak `scripts/robustness.sh` runs: every fault type, scenario after scenario,
    /// for `LOGBOOK_SOAK_MINUTES`.
    #[test]
    #[ignore = "long soak; run through scripts/robustness.sh"]
    fn soak() {
        let minutes: u64 =
            std::env::var("LOGBOOK_SOAK_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(5);
        let base = seed();
        let end = std::time::Instant::now() + Duration::from_secs(minutes * 60);
        let mut failed = Vec::new();
        for n in 0..10_000u64 {
            if std::time::Instant::now() >= end {
                break;
            }
            let (name, faults, power_loss): (&str, &[Fault], bool) = match n % 3 {
                0 => ("all-faults", ALL_FAULTS, false),
                1 => ("all-faults-power-loss", ALL_FAULTS, true),
                _ => ("crashes-and-pauses", &[Fault::Kill, Fault::Pause], true),
            };
            let spec = Spec {
                name: format!("{name}#{n}"),
                faults: faults.to_vec(),
                duration: Duration::from_secs(60),
                power_loss,
                seed: base.wrapping_add(n),
                clients_per_member: 2,
            };
            let report = scenario::run(&spec);
            println!("{}", report.summary());
            if !report.anomalies.is_empty() {
                failed.push(report);
            }
        }
        assert!(
            failed.is_empty(),
            "anomalies in: {}",
            failed.iter().map(|r| r.summary()).collect::<Vec<_>>().join("\n")
        );
    }
}
