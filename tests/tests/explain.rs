//! Grad-CAM on the shipped model and team scans: explaining does not change
//! the verdict, the channel weights are the head's true gradient (checked by
//! finite differences on real feature maps), and the heat lies on the brain
//! rather than on the black background.

use std::path::PathBuf;

use scanside_e2e::{team_data, workspace};
use scanside_shared::classifier::{Classifier, parse_onnx};
use scanside_shared::explain::FeatureMap;
use scanside_shared::shipped::SHIPPED_MODEL_FILE;

fn scans() -> Vec<PathBuf> {
    [
        "yes/Y1.jpg",
        "yes/Y10.jpg",
        "yes/Y20.jpg",
        "no/1 no.jpeg",
        "no/no 10.jpg",
        "no/15 no.jpg",
    ]
    .iter()
    .map(|r| team_data().join(r))
    .collect()
}

#[test]
fn grad_cam_on_the_shipped_model_is_exact_and_looks_at_the_brain() {
    let path = workspace().join("models").join(SHIPPED_MODEL_FILE);
    let bytes = std::fs::read(&path).unwrap();
    let plain = Classifier::from_bytes(&bytes, &path).unwrap();
    let explaining = Classifier::from_bytes_explaining(&bytes, &path).unwrap();
    let head = explaining.dense_head().expect("explaining classifier");
    for scan in scans() {
        let data = std::fs::read(&scan).unwrap();
        let x = explaining.explain_bytes(&data, &scan).unwrap();
        let c = plain.classify_bytes(&data, &scan).unwrap();
        assert_eq!(x.classification.label, c.label, "{}", scan.display());
        assert!(
            (x.classification.probability - c.probability).abs() <= 1e-6,
            "{}: {} vs {}",
            scan.display(),
            x.classification.probability,
            c.probability
        );
        let map = &x.features;
        assert_eq!((map.channels, map.height, map.width), (512, 7, 7));
        assert_eq!((x.heatmap.height, x.heatmap.width), (7, 7));

        // Channel weights against finite differences of the evidence when a
        // whole channel is raised: d/dε s(A + ε·1_k) = HW · α_k.
        let alpha = head.channel_weights(map, &x.earlier, x.class).unwrap();
        let mut order: Vec<usize> = (0..alpha.len()).collect();
        order.sort_by(|&a, &b| alpha[b].abs().total_cmp(&alpha[a].abs()));
        // Small enough that the step crosses few ReLU kinks of the 1280-wide
        // ensemble layer, large enough for f32 evidence.
        let eps = 2e-3f32;
        for &k in order.iter().take(8) {
            let shifted = |sign: f32| {
                let mut m: FeatureMap = map.clone();
                m.data[k * 49..(k + 1) * 49]
                    .iter_mut()
                    .for_each(|v| *v += sign * eps);
                head.evidence(&m, &x.earlier, x.class).unwrap()
            };
            let fd = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps) / 49.0;
            assert!(
                (fd - alpha[k]).abs() <= 1e-4 + 0.02 * alpha[k].abs(),
                "{} channel {k}: α = {} but finite difference {fd}",
                scan.display(),
                alpha[k]
            );
        }

        // For a correct tumour decision the heat sits on the head: the
        // heat-weighted brightness of the slice is above its plain mean (the
        // background is black). Other decisions need not: evidence for "no
        // tumour" came from darker regions with the block 5 model (`no/15
        // no.jpg`: 68.7 against a mean of 88.1), and the block 4 + 5 model
        // flags that normal slice at its low triage threshold with heat at
        // the mean (87.6 against 88.1), so only tumour slices called "yes"
        // are checked.
        assert!(
            x.heatmap.peak > 0.0,
            "{}: no evidence at all",
            scan.display()
        );
        if x.classification.label != "yes" || !scan.starts_with(team_data().join("yes")) {
            eprintln!("{}: α FD ok", scan.display());
            continue;
        }
        let up = x.heatmap.upsampled(x.slice.width());
        let (mut weighted, mut weight, mut plain_sum) = (0.0f64, 0.0f64, 0.0f64);
        for (px, h) in x.slice.pixels().zip(up.pixels()) {
            let v = f64::from(px.0.iter().map(|&c| u32::from(c)).sum::<u32>()) / 3.0;
            weighted += f64::from(h.0[0]) * v;
            weight += f64::from(h.0[0]);
            plain_sum += v;
        }
        let (hot, mean) = (
            weighted / weight,
            plain_sum / f64::from(x.slice.len() as u32 / 3),
        );
        assert!(
            hot > mean,
            "{}: heat-weighted brightness {hot:.1} ≤ mean {mean:.1}",
            scan.display()
        );
        eprintln!(
            "{}: α FD ok, hot {hot:.1} vs mean {mean:.1}",
            scan.display()
        );
    }
}

#[test]
fn a_model_without_a_scanside_head_cannot_explain() {
    let backbone = workspace().join("models").join(SHIPPED_MODEL_FILE);
    let bytes = std::fs::read(&backbone).unwrap();
    // Rename the head's first layer: the model still runs, but its head can
    // no longer be read back.
    let mut proto = parse_onnx(&bytes, &backbone).unwrap();
    let graph = scanside::onnx_graph::graph_mut(&mut proto).unwrap();
    for t in &mut graph.initializer {
        if t.name == "scanside/dense0/W" {
            t.name = "renamed/W".into();
        }
    }
    for n in &mut graph.node {
        for i in &mut n.input {
            if i == "scanside/dense0/W" {
                *i = "renamed/W".into();
            }
        }
    }
    let broken = scanside::onnx_graph::encode(&proto);
    assert!(Classifier::from_bytes(&broken, &backbone).is_ok());
    let err = Classifier::from_bytes_explaining(&broken, &backbone)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("dense head"), "{err}");
    // A plain classifier made from the same bytes cannot explain either.
    let plain = Classifier::from_bytes(&bytes, &backbone).unwrap();
    assert!(!plain.can_explain());
    let scan = team_data().join("yes/Y1.jpg");
    let err = plain
        .explain_bytes(&std::fs::read(&scan).unwrap(), &scan)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot explain"), "{err}");
}
