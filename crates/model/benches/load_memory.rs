//! Peak memory while loading a checkpoint, relative to the size of its weights.
//!
//! A child process writes a random LLaDA-layout float32 checkpoint of about 670 MB to a
//! temporary folder (so none of its memory is counted), then this process resets its peak
//! RSS (`/proc/self/clear_refs`), loads the checkpoint with `load_model` on the CPU and
//! reads `VmHWM`. Target: peak RSS / weight bytes <= 1.2.
//!
//! With `CP_BENCH_LOAD_MEMORY_ARCH=llada-moe` the checkpoint is a random LLaDA-MoE one of about
//! 540 MB instead (hidden 512, 4 layers of which 3 MoE with 40 experts of width 512, top-4, a
//! shared expert, vocab 32000): every expert is a tensor of its own, so the load goes through
//! several hundred small reads.
//!
//! Run: `cargo bench -p cp-model --bench load_memory`

mod common;

use std::path::Path;
use std::time::Instant;

use cp_model::{load_model, DTypeChoice, DeviceChoice, LoadOptions};

const CHILD_ENV: &str = "CP_BENCH_LOAD_MEMORY_WRITE";

fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} missing from /proc/self/status"))
}

fn main() {
    // d_model 1024, 8 layers, mlp 2816, vocab 32000: 166M parameters, 666 MB in float32.
    let cfg = common::llada_config(1024, 8, 16, 2816, 32_000);
    let moe = std::env::var("CP_BENCH_LOAD_MEMORY_ARCH").as_deref() == Ok("llada-moe");
    let moe_cfg = common::llada_moe_config_json(512, 4, 40, 512, 32_000);
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let bytes = if moe {
            common::write_random_llada_moe(Path::new(&dir), &moe_cfg, 0)
        } else {
            common::write_random_llada(Path::new(&dir), &cfg, 0)
        };
        println!("{bytes}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "writer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let weight_bytes: u64 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    tch::set_num_threads(2);
    let before = status_kib("VmRSS:") * 1024;
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let opts = LoadOptions {
        dtype: DTypeChoice::Auto,
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let t = Instant::now();
    let model = load_model(dir.path(), &opts).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:") * 1024;
    let after = status_kib("VmRSS:") * 1024;
    let mb = |b: u64| b as f64 / 1e6;
    if moe {
        println!("load_memory: LLaDA-MoE {moe_cfg}");
    } else {
        println!(
            "load_memory: {} {} layers, d_model {}",
            model.info.model_type, cfg.n_layers, cfg.d_model
        );
    }
    println!("  weight bytes            {:>9.1} MB", mb(weight_bytes));
    println!("  RSS before load         {:>9.1} MB", mb(before));
    println!(
        "  peak RSS (VmHWM)        {:>9.1} MB{}",
        mb(peak),
        if reset {
            ""
        } else {
            "  (clear_refs unavailable: peak since start)"
        }
    );
    println!("  RSS after load          {:>9.1} MB", mb(after));
    println!(
        "  load time               {secs:>9.2} s ({:.0} MB/s)",
        mb(weight_bytes) / secs
    );
    println!(
        "  peak RSS / weight bytes {:>9.3}  (target <= 1.2)",
        peak as f64 / weight_bytes as f64
    );
    println!(
        "  (peak - before) / weight bytes {:.3}",
        (peak - before) as f64 / weight_bytes as f64
    );
    drop(model);
}
