//! Sweep throughput on 1 and 2 threads: runs are independent, so two threads should
//! do nearly twice the runs per second (the target is at least 1.8x). A sweep of 8
//! runs (2 rates x 4 seeds) of the 800 ms call chain, shortened to 60 simulated
//! seconds so one iteration takes about a second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meshsim::multi::runner::{Design, Source, pool};
use meshsim::multi::sweep::{self, Plan};

fn design() -> Design {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/call_chain_800ms.toml"
    );
    Design {
        source: Source {
            path: path.to_owned(),
            stem: "call_chain_800ms".to_owned(),
            text: std::fs::read_to_string(path).expect("the bundled scenario"),
        },
        set: vec![
            "simulation.duration=60s".to_owned(),
            "simulation.warmup=5s".to_owned(),
        ],
    }
}

fn plan(d: &Design) -> Plan {
    Plan {
        schema: sweep::SCHEMA.to_owned(),
        scenario: d.source.path.clone(),
        scenario_hash: String::new(),
        set: d.set.clone(),
        params: vec![sweep::parse_param("workloads.shoppers.rate=30,40").unwrap()],
        seeds: vec![1, 2, 3, 4],
        metrics: vec!["workloads.shoppers.latency_ms.p99".to_owned()],
        workloads: vec!["shoppers".to_owned()],
    }
}

fn bench(c: &mut Criterion) {
    let d = design();
    let p = plan(&d);
    let mut g = c.benchmark_group("sweep");
    g.sample_size(10);
    g.throughput(Throughput::Elements(p.runs() as u64));
    for threads in [1, 2] {
        let pool = pool(Some(threads)).unwrap();
        g.bench_function(format!("threads/{threads}"), |b| {
            b.iter(|| {
                let out = sweep::run(&pool, &d, &p, None).unwrap();
                assert_eq!(out.runs.len(), 8);
                out
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
