//! Adversarial review of issue 21 (shared HTTP clients): sources of one host now share one
//! reqwest client and its connection pool (`http::share`, one per `ca_file`).

use std::time::Duration;

use crate::harness;
use auditrelay::clock::Clock;
use auditrelay::sim::{RateLimitSetting, SimOptions, SimVendor};
use harness::agent::Agent;
use harness::*;

/// Two organizations of one vendor on one host, one client: the very first request is never
/// answered (the source that sent it waits on its 10-minute `request_timeout`), and the other
/// source must still collect every record over the shared pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review21a_a_hung_request_of_one_source_does_not_stall_another_on_the_shared_client() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SimOptions::default();
    opts.aitronos.records = 30;
    opts.aitronos.organizations = 2;
    opts.faults.rate_limit = RateLimitSetting::Off;
    opts.faults.stall_at_request = Some(1);
    let sim = start_sim(opts, &Clock::system()).await;
    let orgs = sim.organizations(SimVendor::Aitronos);
    let extra = "start = \"2d\"\nmax_span = \"3d\"\nrequest_timeout = \"10m\"\n\
                 rate_limit = { requests = 50, per = \"1s\" }\nbackoff = { initial = \"50ms\", max = \"100ms\" }";
    let blocks: Vec<String> = [("org-a", &orgs[0]), ("org-b", &orgs[1])]
        .into_iter()
        .map(|(name, org)| source_block(&sim, SimVendor::Aitronos, org, name, extra))
        .collect();
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(&config, config_with_sources(dir.path(), &blocks)).unwrap();
    let out = out_path(dir.path());
    let mut agent = Agent::start(&config, false);
    agent
        .until(
            "one organization collected whole while the other's first request hangs",
            Duration::from_secs(60),
            |_| {
                delivered_for(&out, SimVendor::Aitronos, &orgs[0]).len() == 30
                    || delivered_for(&out, SimVendor::Aitronos, &orgs[1]).len() == 30
            },
        )
        .await;
    agent.kill().await;
    let log = sim.request_log();
    assert!(log.iter().any(|r| r.status == 0), "the stalled request was answered: {}", log.len());
    sim.shutdown().await;
}
