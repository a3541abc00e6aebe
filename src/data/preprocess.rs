//! How an image becomes a model input: `--preprocess "resize=48x320,keep-aspect,
//! pad=0,layout=NCHW,bgr,scale=1/255,mean=0.5,std=0.5"`, or the same keys in a
//! TOML file. Each value is `(pixel × scale − mean) / std`, pixels 0–255.

use crate::{Error, Result};
use std::path::Path;

/// How images are resized.
#[derive(Clone, Debug, PartialEq)]
pub enum Resize {
    /// Exactly height × width.
    Exact(u32, u32),
    /// The shorter side to this many pixels, keeping the aspect ratio.
    Shorter(u32),
}

/// Where the channel axis goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Channels before height and width.
    Nchw,
    /// Channels last.
    Nhwc,
}

/// The resampling filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear.
    Bilinear,
    /// Bicubic (Catmull-Rom).
    Bicubic,
    /// Lanczos (window 3).
    Lanczos,
}

/// Every key is optional; what is left out comes from the model's input
/// (its height, width, channel count and layout) or is the identity.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Resize before anything else; `None`: the model's size.
    pub resize: Option<Resize>,
    /// With `resize=HxW`: scale to fit inside H × W keeping the aspect ratio,
    /// at the top left, the rest filled with `pad` (text lines, letterboxing).
    pub keep_aspect: bool,
    /// The value (after normalisation) of positions no pixel covers.
    pub pad: f32,
    /// A centre crop after resizing, height × width.
    pub crop: Option<(u32, u32)>,
    /// Channel layout; `None`: the model's.
    pub layout: Option<Layout>,
    /// Channels in BGR order (OpenCV-trained models).
    pub bgr: bool,
    /// One channel (luma) instead of three; taken from the model when unset.
    pub gray: Option<bool>,
    /// Pixels are multiplied by `scale.0` and divided by `scale.1` (`1/255` divides exactly, as numpy does).
    pub scale: (f32, f32),
    /// One value for every channel, or one per channel (after `bgr`).
    pub mean: Vec<f32>,
    /// Divisors after the mean, one for every channel or one per channel.
    pub std: Vec<f32>,
    /// The resampling filter.
    pub filter: Filter,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            resize: None,
            keep_aspect: false,
            pad: 0.0,
            crop: None,
            layout: None,
            bgr: false,
            gray: None,
            scale: (1.0, 1.0),
            mean: vec![0.0],
            std: vec![1.0],
            filter: Filter::Bilinear,
        }
    }
}

impl Preprocess {
    /// A spec string (`key=value,flag,…`), or the path of a TOML file with the same keys.
    pub fn parse(spec: &str) -> Result<Preprocess> {
        let path = Path::new(spec);
        if spec.ends_with(".toml") || path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            return Preprocess::from_toml(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())));
        }
        let pairs = spec.split(',').map(str::trim).filter(|p| !p.is_empty()).map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
            None => (p.to_string(), None),
        });
        Preprocess::from_pairs(pairs).map_err(|e| Error::Usage(format!("preprocess: {e}")))
    }

    fn from_toml(text: &str) -> std::result::Result<Preprocess, String> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let mut pairs = Vec::new();
        for (key, value) in table {
            let text = |v: &toml::Value| match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                other => Err(format!("'{key}': unexpected value {other}")),
            };
            let value = match &value {
                toml::Value::Boolean(false) => continue,
                toml::Value::Boolean(true) => None,
                toml::Value::Array(items) => {
                    Some(items.iter().map(text).collect::<std::result::Result<Vec<_>, _>>()?.join(":"))
                }
                v => Some(text(v)?),
            };
            pairs.push((key, value));
        }
        Preprocess::from_pairs(pairs)
    }

    fn from_pairs(
        pairs: impl IntoIterator<Item = (String, Option<String>)>,
    ) -> std::result::Result<Preprocess, String> {
        let mut p = Preprocess::default();
        for (key, value) in pairs {
            let need = || value.clone().ok_or_else(|| format!("'{key}' needs a value ({key}=…)"));
            let flag = || match &value {
                None => Ok(()),
                Some(_) => Err(format!("'{key}' takes no value")),
            };
            match key.as_str() {
                "resize" => {
                    let v = need()?;
                    p.resize = Some(match v.split_once(['x', 'X']) {
                        Some(_) => {
                            let (h, w) = size(&v)?;
                            Resize::Exact(h, w)
                        }
                        None => Resize::Shorter(number(&v)? as u32),
                    })
                }
                "keep-aspect" | "keep_aspect" => (flag()?, p.keep_aspect = true).1,
                "pad" => p.pad = number(&need()?)?,
                "crop" => p.crop = Some(size(&need()?)?),
                "layout" => {
                    p.layout = Some(match need()?.to_ascii_uppercase().as_str() {
                        "NCHW" => Layout::Nchw,
                        "NHWC" => Layout::Nhwc,
                        other => return Err(format!("layout '{other}': expected NCHW or NHWC")),
                    })
                }
                "bgr" => (flag()?, p.bgr = true).1,
                "rgb" => (flag()?, p.bgr = false).1,
                "gray" | "grey" => (flag()?, p.gray = Some(true)).1,
                "scale" => {
                    let v = need()?;
                    p.scale = match v.split_once('/') {
                        Some((a, b)) => (number(a)?, number(b)?),
                        None => (number(&v)?, 1.0),
                    };
                    if p.scale.1 == 0.0 {
                        return Err(format!("scale '{v}' divides by zero"));
                    }
                }
                "mean" => p.mean = numbers(&need()?)?,
                "std" => {
                    p.std = numbers(&need()?)?;
                    if p.std.contains(&0.0) {
                        return Err("std must not be 0".into());
                    }
                }
                "filter" => {
                    p.filter = match need()?.as_str() {
                        "nearest" => Filter::Nearest,
                        "bilinear" | "linear" | "triangle" => Filter::Bilinear,
                        "bicubic" | "cubic" => Filter::Bicubic,
                        "lanczos" | "lanczos3" => Filter::Lanczos,
                        other => {
                            return Err(format!("filter '{other}': expected nearest, bilinear, bicubic or lanczos"))
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "unknown key '{other}' (keys: resize, keep-aspect, pad, crop, layout, bgr, rgb, gray, scale, \
                         mean, std, filter)"
                    ))
                }
            }
        }
        if p.keep_aspect && !matches!(p.resize, Some(Resize::Exact(..)) | None) {
            return Err("keep-aspect goes with resize=HxW".into());
        }
        Ok(p)
    }

    /// `(pixel × scale − mean) / std` for channel `c` (after channel reordering).
    pub fn normalise(&self, pixel: u8, c: usize) -> f32 {
        let pick = |v: &[f32]| if v.len() == 1 { v[0] } else { v[c.min(v.len() - 1)] };
        let x = pixel as f32 * self.scale.0 / self.scale.1;
        (x - pick(&self.mean)) / pick(&self.std)
    }

    /// Checks per-channel values against the channel count.
    pub fn check_channels(&self, channels: usize) -> Result<()> {
        for (what, v) in [("mean", &self.mean), ("std", &self.std)] {
            if v.len() != 1 && v.len() != channels {
                return Err(Error::Usage(format!(
                    "preprocess: {what} has {} values, the model's images have {channels} channels",
                    v.len()
                )));
            }
        }
        Ok(())
    }
}

fn number(s: &str) -> std::result::Result<f32, String> {
    let s = s.trim();
    match s.split_once('/') {
        Some((a, b)) => Ok(number(a)? / number(b)?),
        None => s.parse().map_err(|_| format!("'{s}' is not a number")),
    }
}

fn numbers(s: &str) -> std::result::Result<Vec<f32>, String> {
    s.split([':', ' ', ';']).filter(|p| !p.is_empty()).map(number).collect()
}

/// `48x320` → (48, 320): height × width.
fn size(s: &str) -> std::result::Result<(u32, u32), String> {
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(|| format!("'{s}' is not HEIGHTxWIDTH"))?;
    let n =
        |v: &str| v.trim().parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| format!("'{s}' is not HEIGHTxWIDTH"));
    Ok((n(h)?, n(w)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_spec_parses() {
        let p =
            Preprocess::parse("resize=48x320,keep-aspect,pad=0,layout=NCHW,bgr,scale=1/255,mean=0.5,std=0.5").unwrap();
        assert_eq!(p.resize, Some(Resize::Exact(48, 320)));
        assert!(p.keep_aspect && p.bgr);
        assert_eq!(
            (p.layout, p.scale, p.mean.clone(), p.std.clone()),
            (Some(Layout::Nchw), (1.0, 255.0), vec![0.5], vec![0.5])
        );
        assert_eq!(p.normalise(255, 0), 1.0);
        assert_eq!(p.normalise(0, 2), -1.0);
    }

    #[test]
    fn toml_gives_the_same_spec() {
        let toml =
            "resize = \"48x320\"\nkeep-aspect = true\npad = 0\nlayout = \"NCHW\"\nbgr = true\nscale = \"1/255\"\n\
                    mean = [0.5]\nstd = 0.5\n";
        let a = Preprocess::from_toml(toml).unwrap();
        let b =
            Preprocess::parse("resize=48x320,keep-aspect,pad=0,layout=NCHW,bgr,scale=1/255,mean=0.5,std=0.5").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn per_channel_values_and_bad_keys() {
        let p = Preprocess::parse("resize=256,crop=224x224,scale=1/255,mean=0.485:0.456:0.406,std=0.229:0.224:0.225")
            .unwrap();
        assert_eq!(p.resize, Some(Resize::Shorter(256)));
        assert_eq!(p.mean.len(), 3);
        assert!(p.check_channels(3).is_ok() && p.check_channels(1).is_err());
        let e = Preprocess::parse("resize=48x320,colour").unwrap_err().to_string();
        assert!(e.contains("unknown key 'colour'"), "{e}");
        assert!(Preprocess::parse("std=0").is_err());
        assert!(Preprocess::parse("resize=256,keep-aspect").is_err());
    }
}
