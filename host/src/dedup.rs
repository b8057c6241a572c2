//! Near-duplicate groups, so that copies of one image never straddle folds.
//!
//! Public copies of the brain-MRI set hold the same slice more than once
//! (re-saved, re-sized, re-named). If one copy trains and the other tests, a
//! cross-validated accuracy measures memory, not generalisation. Every pair
//! of images whose perceptual hashes differ in at most `max_distance` bits
//! (or whose bytes are identical) is linked; the connected components are the
//! groups. Cross-validation then assigns whole groups to folds.

use crate::dataset::Item;

/// Default Hamming-distance threshold on the 64-bit perceptual hash.
pub const DEFAULT_MAX_DISTANCE: u32 = 6;

/// The grouping of a dataset's items.
#[derive(Clone, Debug)]
pub struct Groups {
    /// Group id of each item (ids are `0..count`, in order of first item).
    pub of_item: Vec<usize>,
    /// Number of groups.
    pub count: usize,
    /// Linked pairs `(i, j, distance)` with `i < j`.
    pub pairs: Vec<(usize, usize, u32)>,
}

impl Groups {
    /// Items of each group with more than one member.
    pub fn multi_member(&self) -> Vec<Vec<usize>> {
        let mut members = vec![Vec::new(); self.count];
        for (item, &g) in self.of_item.iter().enumerate() {
            members[g].push(item);
        }
        members.into_iter().filter(|m| m.len() > 1).collect()
    }
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Group items whose perceptual hashes are within `max_distance`.
pub fn group(items: &[Item], max_distance: u32) -> Groups {
    let n = items.len();
    let mut parent: Vec<usize> = (0..n).collect();
    let mut pairs = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            let d = items[i].phash.dist(&items[j].phash);
            if d <= max_distance || items[i].sha256 == items[j].sha256 {
                pairs.push((i, j, d));
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
    }
    let mut id_of_root = vec![usize::MAX; n];
    let mut of_item = vec![0; n];
    let mut count = 0;
    for (i, slot) in of_item.iter_mut().enumerate() {
        let r = find(&mut parent, i);
        if id_of_root[r] == usize::MAX {
            id_of_root[r] = count;
            count += 1;
        }
        *slot = id_of_root[r];
    }
    Groups {
        of_item,
        count,
        pairs,
    }
}
