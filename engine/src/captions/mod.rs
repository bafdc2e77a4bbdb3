//! Caption sources: the one text per sample that a text encoder embeds.
//!
//! `concat` joins all human captions with a space in file order, `first` takes the first, and
//! `random` takes one chosen by `(seed, sample id)` — stable across runs, versions and subsets.
//! The human captions are whatever the dataset holds (COCO captions, Open Images' Localized
//! Narratives). [`generate`] is the other kind: captions a model writes for each image.

pub mod generate;

use crate::dataset::Sample;
use crate::manifest::CaptionSource;
use crate::rng::SplitMix64;

#[derive(Debug, thiserror::Error)]
#[error("sample {id}: no captions to take a `{source_name}` caption from")]
pub struct NoCaptions {
    pub id: String,
    pub source_name: &'static str,
}

/// One text per sample, in sample order.
pub fn texts(
    samples: &[Sample],
    source: CaptionSource,
    seed: u64,
) -> Result<Vec<String>, NoCaptions> {
    samples.iter().map(|s| text(s, source, seed)).collect()
}

fn text(sample: &Sample, source: CaptionSource, seed: u64) -> Result<String, NoCaptions> {
    let captions = &sample.captions;
    if captions.is_empty() {
        return Err(NoCaptions {
            id: sample.id.to_string(),
            source_name: name(source),
        });
    }
    Ok(match source {
        CaptionSource::Concat => captions.join(" "),
        CaptionSource::First => captions[0].clone(),
        CaptionSource::Random => {
            let pick = SplitMix64::keyed(seed, &sample.id.0).below(captions.len() as u64);
            captions[pick as usize].clone()
        }
    })
}

pub fn name(source: CaptionSource) -> &'static str {
    match source {
        CaptionSource::Concat => "concat",
        CaptionSource::Random => "random",
        CaptionSource::First => "first",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{LabelSet, SampleId};

    fn sample(id: &str, captions: &[&str]) -> Sample {
        Sample {
            id: SampleId(id.into()),
            labels: LabelSet::new(["cat".to_string()]),
            captions: captions.iter().map(|c| c.to_string()).collect(),
            image: None,
        }
    }

    #[test]
    fn concat_and_first_follow_file_order() {
        let s = [sample("1", &["a cat.", "a small cat."])];
        assert_eq!(
            texts(&s, CaptionSource::Concat, 0).unwrap(),
            ["a cat. a small cat."]
        );
        assert_eq!(texts(&s, CaptionSource::First, 0).unwrap(), ["a cat."]);
    }

    #[test]
    fn random_is_seeded_per_sample_and_independent_of_neighbours() {
        let five = ["c0", "c1", "c2", "c3", "c4"];
        let many: Vec<Sample> = (0..50).map(|i| sample(&i.to_string(), &five)).collect();
        let a = texts(&many, CaptionSource::Random, 3).unwrap();
        assert_eq!(a, texts(&many, CaptionSource::Random, 3).unwrap());
        assert_ne!(a, texts(&many, CaptionSource::Random, 4).unwrap());
        assert_eq!(
            texts(&many[10..11], CaptionSource::Random, 3).unwrap()[0],
            a[10]
        );
        let distinct: std::collections::BTreeSet<&String> = a.iter().collect();
        assert!(distinct.len() > 1, "picks vary across samples");
    }

    #[test]
    fn a_sample_without_captions_is_named() {
        let err = texts(&[sample("139", &[])], CaptionSource::Random, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sample 139: no captions to take a `random` caption from"
        );
    }
}
