//! Stratified, duplicate-grouped k-fold assignment.
//!
//! Whole groups (see [`crate::dedup`]) go to one fold. Groups are shuffled
//! with the repeat's seed, then placed largest first, each into the fold that
//! currently holds the fewest images of the group's class (ties: fewest
//! images overall, then lowest fold), which keeps class ratios even across
//! folds, like scikit-learn's `StratifiedGroupKFold`.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Fold of each item for one repeat.
pub fn assign_folds(labels: &[u8], group: &[usize], folds: usize, seed: u64) -> Vec<usize> {
    let n_groups = group.iter().max().map_or(0, |m| m + 1);
    let mut size = vec![0usize; n_groups];
    let mut positives = vec![0usize; n_groups];
    for (i, &g) in group.iter().enumerate() {
        size[g] += 1;
        positives[g] += labels[i] as usize;
    }
    let mut order: Vec<usize> = (0..n_groups).filter(|&g| size[g] > 0).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    // Stable sort keeps the shuffled order among equal sizes.
    order.sort_by_key(|&g| std::cmp::Reverse(size[g]));
    let mut per_class = vec![[0usize; 2]; folds];
    let mut fold_of_group = vec![0usize; n_groups];
    for g in order {
        let class = usize::from(2 * positives[g] >= size[g]);
        let f = (0..folds)
            .min_by_key(|&f| (per_class[f][class], per_class[f][0] + per_class[f][1], f))
            .expect("at least one fold");
        per_class[f][class] += size[g];
        fold_of_group[g] = f;
    }
    group.iter().map(|&g| fold_of_group[g]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_stay_together_and_classes_spread() {
        let labels: Vec<u8> = (0..100).map(|i| u8::from(i % 5 < 3)).collect();
        let group: Vec<usize> = (0..100).map(|i| if i < 20 { i / 4 } else { i }).collect();
        let folds = assign_folds(&labels, &group, 5, 3);
        for i in 0..100 {
            for j in 0..100 {
                if group[i] == group[j] {
                    assert_eq!(folds[i], folds[j]);
                }
            }
        }
        for f in 0..5 {
            let n = folds.iter().filter(|&&x| x == f).count();
            let pos = (0..100)
                .filter(|&i| folds[i] == f && labels[i] == 1)
                .count();
            assert!((16..=24).contains(&n), "fold {f} has {n}");
            assert!(
                (pos as f64 / n as f64 - 0.6).abs() < 0.15,
                "fold {f}: {pos}/{n}"
            );
        }
    }

    #[test]
    fn repeats_differ_and_are_reproducible() {
        let labels: Vec<u8> = (0..50).map(|i| u8::from(i % 2 == 0)).collect();
        let group: Vec<usize> = (0..50).collect();
        assert_eq!(
            assign_folds(&labels, &group, 5, 1),
            assign_folds(&labels, &group, 5, 1)
        );
        assert_ne!(
            assign_folds(&labels, &group, 5, 1),
            assign_folds(&labels, &group, 5, 2)
        );
    }
}
