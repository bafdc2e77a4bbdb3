//! Sweeps: one `[[runs]]` table with a `sweep` expands into the cross product of its values.
//!
//! ```toml
//! [[runs]]
//! name = "{encoder}_{captions}"
//! parts = [{ encoder = "minilm" }]
//! sweep = { captions = ["concat", "random"], "parts.0.encoder" = ["minilm", "mpnet"] }
//! ```
//! Each sweep key is a dotted path inside the run (numbers index arrays). The generated name fills
//! `{key}` placeholders (full key or its last segment); without placeholders the values are
//! appended: `text_concat_minilm`. Keys expand in sorted order, the last varying fastest.

use std::path::Path;

use super::schema::Run;
use super::{Context, KeyPath, ManifestError};

/// Expands every run; each result carries the index of the `[[runs]]` table it came from.
pub(crate) fn expand(runs: &[Run], ctx: &Context) -> Result<Vec<(usize, Run)>, ManifestError> {
    let mut out = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        if run.sweep.is_empty() {
            out.push((i, run.clone()));
            continue;
        }
        for combination in cross_product(run) {
            out.push((i, apply(run, &combination, i, ctx)?));
        }
    }
    Ok(out)
}

type Combination<'a> = Vec<(&'a str, &'a toml::Value)>;

fn cross_product(run: &Run) -> Vec<Combination<'_>> {
    let mut combos: Vec<Combination> = vec![Vec::new()];
    for (key, values) in &run.sweep {
        combos = combos
            .into_iter()
            .flat_map(|combo| {
                values.iter().map(move |v| {
                    let mut next = combo.clone();
                    next.push((key.as_str(), v));
                    next
                })
            })
            .collect();
    }
    combos
}

fn apply(
    base: &Run,
    combination: &Combination,
    origin: usize,
    ctx: &Context,
) -> Result<Run, ManifestError> {
    let mut plain = base.clone();
    plain.sweep.clear();
    let mut value = toml::Value::try_from(&plain).expect("a run serialises to TOML");
    let at = |key: &str| {
        KeyPath::default()
            .name("runs")
            .index(origin)
            .name("sweep")
            .name(key)
    };
    for (key, v) in combination {
        set_path(&mut value, key, (*v).clone())
            .map_err(|why| ctx.error(&at(key), format!("cannot sweep: {why}")))?;
    }
    let mut run: Run = value.try_into().map_err(|e: toml::de::Error| {
        let keys: Vec<&str> = combination.iter().map(|(k, _)| *k).collect();
        ctx.error(
            &at(keys[0]),
            format!("swept value rejected: {}", e.message().trim()),
        )
    })?;
    run.name = sweep_name(&base.name, combination);
    Ok(run)
}

fn set_path(root: &mut toml::Value, dotted: &str, new: toml::Value) -> Result<(), String> {
    let mut slot = root;
    for seg in dotted.split('.') {
        slot = match (slot, seg.parse::<usize>()) {
            (toml::Value::Array(items), Ok(i)) => {
                let len = items.len();
                items
                    .get_mut(i)
                    .ok_or(format!("index {i} is past the {len} items"))?
            }
            (toml::Value::Table(table), _) => {
                table.entry(seg).or_insert(toml::Value::Boolean(false))
            }
            _ => return Err(format!("`{seg}` does not name a table key or array index")),
        };
    }
    *slot = new;
    Ok(())
}

fn sweep_name(base: &str, combination: &Combination) -> String {
    if !base.contains('{') {
        let values: Vec<String> = combination.iter().map(|(_, v)| short(v)).collect();
        return format!("{base}_{}", values.join("_"));
    }
    combination.iter().fold(base.to_string(), |name, (key, v)| {
        let last = key.rsplit('.').next().unwrap_or(key);
        name.replace(&format!("{{{key}}}"), &short(v))
            .replace(&format!("{{{last}}}"), &short(v))
    })
}

/// A value as it reads in a name: strings bare (file paths by their stem), others as TOML.
fn short(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) if s.contains('/') || s.ends_with(".npy") => Path::new(s)
            .file_stem()
            .map_or_else(|| s.clone(), |stem| stem.to_string_lossy().into_owned()),
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(toml_text: &str) -> Run {
        toml::from_str(toml_text).unwrap()
    }

    fn ctx() -> Context<'static> {
        Context {
            path: Path::new("m.toml"),
            text: "",
        }
    }

    #[test]
    fn expands_the_cross_product_with_readable_names() {
        let r = run(r#"
            name = "{encoder}_{captions}"
            parts = [{ encoder = "minilm" }]
            sweep = { captions = ["concat", "random"], "parts.0.encoder" = ["minilm", "mpnet"] }
        "#);
        let runs = expand(&[r], &ctx()).unwrap();
        let names: Vec<&str> = runs.iter().map(|(_, r)| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "minilm_concat",
                "mpnet_concat",
                "minilm_random",
                "mpnet_random"
            ]
        );
        assert_eq!(runs[1].1.parts[0].encoder.as_deref(), Some("mpnet"));
        assert!(
            runs.iter()
                .all(|(origin, r)| *origin == 0 && r.sweep.is_empty())
        );
    }

    #[test]
    fn appends_values_without_placeholders() {
        let r = run(r#"
            name = "fused"
            parts = [{ precomputed = "a.npy" }, { precomputed = "b.npy" }]
            sweep = { "parts.1.weight" = [0.5, 2.0], "parts.0.precomputed" = ["x/text.npy"] }
        "#);
        let runs = expand(&[r], &ctx()).unwrap();
        let names: Vec<&str> = runs.iter().map(|(_, r)| r.name.as_str()).collect();
        assert_eq!(names, ["fused_text_0.5", "fused_text_2.0"]);
        assert_eq!(runs[1].1.parts[1].weight, 2.0);
    }

    #[test]
    fn rejects_a_path_that_leaves_the_run() {
        let r = run(r#"
            name = "x"
            parts = [{ precomputed = "a.npy" }]
            sweep = { "parts.3.weight" = [1.0] }
        "#);
        let err = expand(&[r], &ctx()).unwrap_err().to_string();
        assert!(err.contains("index 3 is past the 1 items"), "{err}");
    }

    #[test]
    fn rejects_a_value_of_the_wrong_type() {
        let r = run(r#"
            name = "x"
            parts = [{ precomputed = "a.npy" }]
            sweep = { normalize_parts = ["yes"] }
        "#);
        let err = expand(&[r], &ctx()).unwrap_err().to_string();
        assert!(err.contains("swept value rejected"), "{err}");
    }
}
