//! Button → LED result latency of the appliance, on the simulated board.
//!
//! `cargo run --release -p scanside-device --example press_latency -- [MODEL] [IMAGE] [RUNS]`
//!
//! Starts the real [`Appliance`] (model verified and warmed up, inbox,
//! audit log in a temporary folder, default timings: 10 ms main-loop
//! period, 30 ms debounce), then RUNS times: puts IMAGE in the inbox, presses
//! and releases the button, and measures from the release (a short press
//! acts on release) to the moment the result LED lights. Beside it, the
//! stages of the same scan measured directly: read, decode, preprocess,
//! inference. Prints one JSON line with medians and the peak RSS.
//! `bench/device.sh` runs it and the real binary; see docs/benchmarks.md,
//! "Device figures".

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scanside_device::appliance::Appliance;
use scanside_device::clock::MonotonicClock;
use scanside_device::config::DeviceConfig;
use scanside_device::controller::State;
use scanside_device::panel::Polarity;
use scanside_device::sim::{LedLog, SimButton};
use scanside_shared::classifier::Classifier;
use scanside_shared::preprocess::{DecodeLimits, decode, resize_rgb, tensor_from_rgb, to_rgb8};
use scanside_shared::shipped;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = shipped::resolve(args.first().map(PathBuf::from))?;
    let image = PathBuf::from(
        args.get(1)
            .map_or("../shared/data/brain-mri/yes/Y1.jpg", |s| s.as_str()),
    );
    let runs: usize = args.get(2).map_or(Ok(10), |r| r.parse())?;

    let dir = tempfile::tempdir()?;
    let config = DeviceConfig::parse(
        &format!(
            "model = {model:?}\ninbox = {:?}\naudit_log = {:?}\nboard = \"sim\"\n",
            dir.path().join("inbox"),
            dir.path().join("audit.log")
        ),
        &dir.path().join("device.toml"),
    )?;
    let (button, handle) = SimButton::new();
    let leds = LedLog::new(false);
    let t = Instant::now();
    let mut app = Appliance::start(
        &config,
        button,
        leds.leds(),
        MonotonicClock::new(),
        Polarity::default(),
    )?;
    let start_ms = ms(t);
    anyhow::ensure!(app.fault().is_none(), "{:?}", app.fault());

    // The main loop as `run_until` turns it: one step, then the poll period.
    let poll = Duration::from_millis(config.timing.poll_ms);
    let mut press_ms = Vec::new();
    for run in 0..=runs {
        let ext = image
            .extension()
            .map_or("jpg".into(), |e| e.to_string_lossy());
        std::fs::copy(
            &image,
            dir.path().join("inbox").join(format!("scan-{run}.{ext}")),
        )?;
        let released: Arc<Mutex<Option<Instant>>> = Arc::default();
        let presser = {
            let (handle, released) = (handle.clone(), released.clone());
            std::thread::spawn(move || {
                handle.press_for(Duration::from_millis(100));
                *released.lock().expect("not poisoned") = Some(Instant::now());
            })
        };
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut busy = false;
        let shown_after = loop {
            app.step()?;
            busy |= app.state() == State::Busy;
            let release = *released.lock().expect("not poisoned");
            // The step that changes the state also lights the LEDs.
            if let (true, Some(release), State::Result(_) | State::Error(_)) =
                (busy, release, app.state())
            {
                anyhow::ensure!(
                    matches!(app.state(), State::Result(_)),
                    "{}: {:?}",
                    image.display(),
                    app.state()
                );
                break ms(release);
            }
            anyhow::ensure!(Instant::now() < deadline, "no result after 10 min");
            std::thread::sleep(poll);
        };
        presser.join().expect("presser");
        if run > 0 {
            press_ms.push(shown_after);
        }
    }

    // The stages of the same scan, measured directly with the same model.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let classifier = Classifier::load(&model)?.with_threads(cores);
    let spec = classifier.manifest().preprocessing.clone();
    let limits = DecodeLimits::default();
    let mut stages: [Vec<f64>; 4] = Default::default();
    for run in 0..=runs {
        let t = Instant::now();
        let bytes = std::fs::read(&image)?;
        let read_ms = ms(t);
        let t = Instant::now();
        let rgb = to_rgb8(decode(&bytes, &image, &limits)?);
        let decode_ms = ms(t);
        let t = Instant::now();
        let input = tensor_from_rgb(&resize_rgb(&rgb, &spec), &spec)?;
        let preprocess_ms = ms(t);
        let t = Instant::now();
        classifier.positive_probability(&input)?;
        let inference_ms = ms(t);
        if run > 0 {
            for (s, v) in stages
                .iter_mut()
                .zip([read_ms, decode_ms, preprocess_ms, inference_ms])
            {
                s.push(v);
            }
        }
    }
    let [read_ms, decode_ms, preprocess_ms, inference_ms] = stages.map(median);
    println!(
        "{}",
        serde_json::json!({
            "model": model,
            "image": image,
            "runs": runs,
            "threads": cores,
            "start_ms": start_ms,
            "press_to_result_ms": median(press_ms),
            "read_ms": read_ms,
            "decode_ms": decode_ms,
            "preprocess_ms": preprocess_ms,
            "inference_ms": inference_ms,
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}
