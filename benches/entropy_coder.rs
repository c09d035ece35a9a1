//! Criterion benchmark of the entropy coder on one core: symbols/s for encode and decode of
//! Gaussian-distributed latents with a realistic spread of scale indexes.
//! Run with `cargo bench -p entropy`; `ember bench entropy` prints the same figures as a table.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use entropy::GaussianTables;

fn bench(c: &mut Criterion) {
    let tables = GaussianTables::shared().tables();
    let (symbols, indexes) = entropy::bench_data::latents(1 << 20, 42);
    let bytes = entropy::encode(&symbols, &indexes, tables).unwrap();
    let mut group = c.benchmark_group("entropy");
    group.throughput(Throughput::Elements(symbols.len() as u64));
    group.bench_function(BenchmarkId::new("encode", symbols.len()), |b| {
        b.iter(|| entropy::encode(&symbols, &indexes, tables).unwrap())
    });
    group.bench_function(BenchmarkId::new("decode", symbols.len()), |b| {
        b.iter(|| entropy::decode(&bytes, &indexes, tables).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
