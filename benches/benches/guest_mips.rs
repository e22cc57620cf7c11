//! Guest MIPS on fixed workloads (criterion). Throughput is in guest instructions, so
//! criterion's "elem/s" is guest instructions per second.
//!
//! cargo bench -p trapeze-benches

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use trapeze_machine::{Config, Image, Machine, Outcome, BENCH_GUEST, DEFAULT_GUEST};

fn machine(guest: &[u8]) -> Machine {
    let cfg = Config::quiet(
        Image::Flat {
            data: guest.to_vec(),
            load: 0x7c00,
        },
        16 << 20,
    );
    Machine::new(&cfg).expect("bench machine")
}

/// Instructions the guest retires from reset to its debug-exit.
fn instructions(guest: &[u8]) -> u64 {
    let mut m = machine(guest);
    assert_eq!(
        m.run(None),
        Outcome::DebugExit(0),
        "bench guest must finish"
    );
    m.stats.instructions
}

fn guests(c: &mut Criterion) {
    let mut g = c.benchmark_group("guest");
    g.sample_size(10);
    for (name, guest) in [("intloop", BENCH_GUEST), ("hello", DEFAULT_GUEST)] {
        g.throughput(Throughput::Elements(instructions(guest)));
        g.bench_function(name, |b| {
            b.iter_batched(
                || machine(guest),
                |mut m| m.run(None),
                criterion::BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, guests);
criterion_main!(benches);
