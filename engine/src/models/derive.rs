//! Derived files: made in the staging folder from the fetched files once those are verified, then
//! hashed as they are written and checked against their pins like any fetched file.

use std::borrow::Cow;

use super::install::{Manifest, ManifestFile, Staging, check};
use super::registry::{DerivedFile, ModelSpec, Recipe};
use super::{ModelError, torch_legacy};

/// Makes every derived file of `spec` and adds it to `manifest`.
pub(crate) fn apply(
    spec: &ModelSpec,
    staging: &Staging,
    mut manifest: Manifest,
    say: &dyn Fn(&str),
) -> Result<Manifest, ModelError> {
    let id = spec.id.as_str();
    for derived in &spec.derived {
        let bytes = make(id, derived, staging, say)?;
        let path = &derived.pinned.path;
        let staged = staging.file(path);
        let (sha256, size) =
            staging.write_file(path, &mut bytes.as_ref(), &|e| staging.io(&staged, e))?;
        check(id, &derived.pinned, &sha256)?;
        manifest.files.push(ManifestFile {
            path: path.clone(),
            sha256,
            size,
        });
    }
    Ok(manifest)
}

fn make<'a>(
    id: &str,
    derived: &'a DerivedFile,
    staging: &Staging,
    say: &dyn Fn(&str),
) -> Result<Cow<'a, [u8]>, ModelError> {
    match &derived.recipe {
        Recipe::Text(text) => Ok(Cow::Borrowed(text.as_bytes())),
        Recipe::SafetensorsFromTorchLegacy { from } => {
            say(&format!(
                "model {id}: converting {from} to {}",
                derived.pinned.path
            ));
            let source = staging.file(from);
            let pickle = std::fs::read(&source).map_err(|e| staging.io(&source, e))?;
            let converted = torch_legacy::read_state_dict(&pickle)
                .and_then(|tensors| torch_legacy::to_safetensors(&tensors))
                .map_err(|e| ModelError::Convert {
                    id: id.to_string(),
                    file: derived.pinned.path.clone(),
                    message: format!("converting {from}: {e}"),
                })?;
            Ok(Cow::Owned(converted))
        }
    }
}
