//! The study's five experiment families, read off a run's parts.
//!
//! A part embeds captions or an image; its model is "joint" when it takes both modalities
//! (CLIP, BLIP), so its caption and image vectors share one space. Runs whose parts are
//! precomputed vectors, or that mix in ways the study did not, fall under "other" unless the
//! manifest names their `family`.

use super::results::EncoderInfo;

/// Family names in the study's order; reports list families in this order.
pub const FAMILIES: [&str; 6] = [
    "1. captions",
    "2. image",
    "3. captions ++ image (separate encoders)",
    "4. image (joint image-text model)",
    "5. captions ++ image (joint image-text model)",
    "other",
];

/// The family of a run with these parts.
pub fn classify(parts: &[EncoderInfo]) -> &'static str {
    if parts.is_empty() || parts.iter().any(|p| p.input.is_none()) {
        return FAMILIES[5];
    }
    let captions = parts
        .iter()
        .filter(|p| p.input.as_deref() == Some("captions"))
        .count();
    let images = parts.len() - captions;
    let joint = |p: &EncoderInfo| {
        p.modalities.iter().any(|m| m == "text") && p.modalities.iter().any(|m| m == "image")
    };
    let one_joint_model =
        parts.iter().all(joint) && parts.iter().all(|p| p.model == parts[0].model);
    match (captions > 0, images > 0) {
        (true, false) => FAMILIES[0],
        (false, true) if parts.iter().all(joint) => FAMILIES[3],
        (false, true) => FAMILIES[1],
        (true, true) if one_joint_model => FAMILIES[4],
        (true, true) => FAMILIES[2],
        (false, false) => FAMILIES[5],
    }
}

/// Sort position of a family name (manifest-given names come after the study's, by name).
pub fn rank(family: &str) -> (usize, String) {
    let position = FAMILIES.iter().position(|f| *f == family);
    (position.unwrap_or(FAMILIES.len()), family.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(model: &str, input: &str, modalities: &[&str]) -> EncoderInfo {
        EncoderInfo {
            plugin: "candle".into(),
            model: model.into(),
            digest: String::new(),
            plugin_version: None,
            captions: (input == "captions").then(|| "concat".into()),
            input: Some(input.into()),
            modalities: modalities.iter().map(|m| m.to_string()).collect(),
            parameters: None,
            dim: 4,
            weight: 1.0,
        }
    }

    #[test]
    fn the_five_families() {
        let minilm = part("minilm", "captions", &["text"]);
        let effnet = part("effnet", "image", &["image"]);
        let clip_text = part("clip", "captions", &["text", "image"]);
        let clip_image = part("clip", "image", &["text", "image"]);
        let blip_image = part("blip", "image", &["text", "image"]);
        assert_eq!(classify(std::slice::from_ref(&minilm)), FAMILIES[0]);
        assert_eq!(classify(std::slice::from_ref(&effnet)), FAMILIES[1]);
        assert_eq!(classify(&[minilm.clone(), effnet]), FAMILIES[2]);
        assert_eq!(classify(std::slice::from_ref(&clip_image)), FAMILIES[3]);
        assert_eq!(
            classify(&[clip_text.clone(), clip_image.clone()]),
            FAMILIES[4]
        );
        // A joint model's image vector with another model's caption vector: separate encoders.
        assert_eq!(classify(&[minilm, clip_image.clone()]), FAMILIES[2]);
        assert_eq!(classify(&[clip_text, blip_image]), FAMILIES[2]);
        let mut precomputed = clip_image;
        precomputed.input = None;
        assert_eq!(classify(&[precomputed]), FAMILIES[5]);
    }

    #[test]
    fn study_families_sort_first() {
        let mut names = vec!["zeta", FAMILIES[2], FAMILIES[0], "alpha"];
        names.sort_by_key(|f| rank(f));
        assert_eq!(names, [FAMILIES[0], FAMILIES[2], "alpha", "zeta"]);
    }
}
