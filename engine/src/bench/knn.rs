//! `embedlab bench knn`: exact self-k-NN on seeded random unit vectors, against the rate of a
//! plain large SGEMM on the same machine (the hardware limit the search is built to approach).

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context as _;
use faer::{Accum, Mat, Par};

use embedlab::embed::npy;
use embedlab::progress::Progress;
use embedlab::retrieval::{self, ExactOptions, bench::random_unit_vectors};

use super::{Timing, write_json};

#[derive(clap::Args)]
pub struct Args {
    /// Corpus sizes (every row queries all rows).
    #[arg(long, value_delimiter = ',', default_values_t = [20_000usize, 100_000])]
    n: Vec<usize>,
    /// Dimensions.
    #[arg(long, value_delimiter = ',', default_values_t = [384usize, 768])]
    dim: Vec<usize>,
    /// Neighbours per query, the query itself excluded (a k + 1 search that drops self).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Repetitions per case; the table shows the median.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Side of the square SGEMM timed as the machine's reference rate (0: skip).
    #[arg(long, default_value_t = 4096)]
    sgemm: usize,
    /// Write the figures as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write each case's vectors and our neighbours as `.npy` here (`vectors-N-D.npy`,
    /// `neighbours-N-D.npy`), so another tool can search the same vectors and be compared.
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,
}

pub fn run(args: &Args, progress: &Progress) -> anyhow::Result<std::process::ExitCode> {
    let threads = rayon::current_num_threads();
    let sgemm = (args.sgemm > 0).then(|| sgemm_rates(args.sgemm));
    if let Some(rates) = &sgemm {
        println!(
            "plain SGEMM {0}×{0}×{0} (faer): {1:.0} GFLOP/s on 1 thread, {2:.0} on {threads}",
            args.sgemm, rates.one_thread, rates.all_threads
        );
    }
    println!("| N | d | k | k-NN (s) | GFLOP/s | of SGEMM | threads |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut cases = Vec::new();
    for &n in &args.n {
        for &dim in &args.dim {
            let case = run_case(args, n, dim, progress)?;
            let gflops = 2.0 * (n as f64).powi(2) * dim as f64 / case.timing.median / 1e9;
            let of_sgemm = sgemm.as_ref().map(|r| gflops / r.all_threads);
            println!(
                "| {n} | {dim} | {} | {:.3} | {gflops:.0} | {} | {threads} |",
                args.k,
                case.timing.median,
                of_sgemm.map_or("–".into(), |f| format!("{:.0} %", 100.0 * f))
            );
            cases.push(serde_json::json!({
                "n": n, "dim": dim, "k": args.k, "seconds": case.timing.seconds,
                "median": case.timing.median, "gflops": gflops, "of_sgemm": of_sgemm,
                "vectors": case.vectors, "neighbours": case.neighbours,
            }));
        }
    }
    if let Some(path) = &args.json {
        let sgemm = sgemm.map(|r| {
            serde_json::json!({
                "size": args.sgemm, "one_thread_gflops": r.one_thread,
                "all_threads_gflops": r.all_threads,
            })
        });
        write_json(
            path,
            &serde_json::json!({ "threads": threads, "sgemm": sgemm, "cases": cases }),
        )?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

struct Case {
    timing: Timing,
    /// Where the vectors and neighbours were saved, with `--save`.
    vectors: Option<PathBuf>,
    neighbours: Option<PathBuf>,
}

fn run_case(args: &Args, n: usize, dim: usize, progress: &Progress) -> anyhow::Result<Case> {
    let vectors = random_unit_vectors(n, dim, 42);
    let options = ExactOptions {
        k: args.k,
        ..Default::default()
    };
    let mut found = None;
    let timing = Timing::measure(args.repeat, || {
        found = Some(retrieval::search(&vectors, &options, &|_| {}));
    });
    let found = found.expect("at least one repetition")?;
    progress.detail(&format!("N={n} d={dim}: runs {:?}", timing.seconds));
    let (mut saved_vectors, mut saved_neighbours) = (None, None);
    if let Some(dir) = &args.save {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("vectors-{n}-{dim}.npy"));
        npy::write_f32(&path, &vectors)?;
        saved_vectors = Some(path);
        let path = dir.join(format!("neighbours-{n}-{dim}.npy"));
        let bytes = npy::encode_u32(n, args.k, &found.indices);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        saved_neighbours = Some(path);
    }
    Ok(Case {
        timing,
        vectors: saved_vectors,
        neighbours: saved_neighbours,
    })
}

/// GFLOP/s of `size × size × size` f32 products: one on one thread, and one per rayon thread at
/// once (each its own matrices), which is the most the machine's cores deliver together.
struct SgemmRates {
    one_thread: f64,
    all_threads: f64,
}

fn sgemm_rates(size: usize) -> SgemmRates {
    let flops = 2.0 * (size as f64).powi(3);
    let threads = rayon::current_num_threads();
    let products: Vec<Mutex<Product>> = (0..threads)
        .map(|_| Mutex::new(Product::new(size)))
        .collect();
    let one = Timing::measure(3, || products[0].lock().unwrap().run());
    let all = Timing::measure(3, || {
        rayon::broadcast(|ctx| products[ctx.index()].lock().unwrap().run());
    });
    SgemmRates {
        one_thread: flops / one.median / 1e9,
        all_threads: threads as f64 * flops / all.median / 1e9,
    }
}

/// `c = a · b` for square matrices, filled once so that only the product is timed.
struct Product {
    a: Mat<f32>,
    b: Mat<f32>,
    c: Mat<f32>,
}

impl Product {
    fn new(size: usize) -> Product {
        Product {
            a: Mat::from_fn(size, size, |i, j| ((i * 7 + j * 13) % 17) as f32 / 17.0),
            b: Mat::from_fn(size, size, |i, j| ((i * 11 + j * 5) % 19) as f32 / 19.0),
            c: Mat::zeros(size, size),
        }
    }

    /// Single-threaded: the parallelism is one product per thread.
    fn run(&mut self) {
        let Product { a, b, c } = self;
        faer::linalg::matmul::matmul(
            c.as_mut(),
            Accum::Replace,
            a.as_ref(),
            b.as_ref(),
            1.0,
            Par::Seq,
        );
    }
}
