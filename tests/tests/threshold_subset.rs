//! How a site's own reviewed scans set the operating point: with
//! `threshold_on`, cross-validation fits exactly the same heads and the
//! threshold comes from the marked images' out-of-fold predictions only,
//! by the recipe's rule; the model records which images set it.

use std::path::Path;

use scanside::operating_point::ThresholdRule;
use scanside::train::{TrainOptions, cross_validate_on, fold_assignment, prepare};
use scanside_e2e::{team_data, workspace};

/// Every 6th team image of each class, linked into `root`.
fn subset(root: &Path) {
    for class in ["yes", "no"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(team_data().join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files.iter().step_by(6) {
            std::os::unix::fs::symlink(f, root.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn thresholds_come_from_the_marked_images_only() {
    let dir = tempfile::tempdir().unwrap();
    subset(&dir.path().join("data"));
    let mut opts = TrainOptions::new(
        dir.path().join("data"),
        workspace().join("backbones/vgg16-notop.onnx"),
        dir.path().join("out"),
    );
    opts.cache = scanside::features::FeatureCache::new(dir.path().join("cache"));
    opts.size = 64;
    opts.augmented_views = 0;
    opts.folds = 3;
    opts.repeats = 1;
    opts.head.hidden = vec![32];
    opts.head.ensemble = 1;
    opts.head.max_epochs = 30;
    opts.target_sensitivity = 0.8;
    opts.quiet = true;
    let prep = prepare(&opts).unwrap();
    let n = prep.labels.len();
    let folds = fold_assignment(&prep, &opts);
    // The "site": every other image.
    let mask: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
    for rule in [ThresholdRule::Quantile, ThresholdRule::LogitNormal] {
        let opts = TrainOptions {
            threshold_rule: rule,
            ..opts.clone()
        };
        let all = cross_validate_on(&prep, &opts, &folds, None, None).unwrap();
        let site = cross_validate_on(&prep, &opts, &folds, None, Some(&mask)).unwrap();
        assert_eq!(all.oof_mean, site.oof_mean, "the same heads either way");
        let marked: Vec<usize> = (0..n).filter(|&i| mask[i]).collect();
        let p: Vec<f32> = marked.iter().map(|&i| site.oof_mean[i]).collect();
        let y: Vec<u8> = marked.iter().map(|&i| prep.labels[i]).collect();
        let point = &site.operating_point;
        assert_eq!(point.rule, rule);
        assert_eq!(point.threshold, rule.threshold(&p, &y, 0.8));
        assert_eq!(point.threshold, site.summary.threshold);
        assert_eq!(point.positives, y.iter().filter(|&&l| l == 1).count());
        assert_eq!(point.positives + point.negatives, marked.len());
        assert!(
            point
                .chosen_on
                .as_deref()
                .unwrap()
                .starts_with(&format!("{} of the {n}", marked.len()))
        );
        assert_eq!(
            all.operating_point.positives + all.operating_point.negatives,
            n
        );
        assert_eq!(all.operating_point.chosen_on, None);
        assert_eq!(
            all.operating_point.threshold,
            rule.threshold(&all.oof_mean, &prep.labels, 0.8)
        );
    }
}
