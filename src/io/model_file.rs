//! Model weights in safetensors, with PyTorch `nn.Sequential` state-dict names (`"0.weight"`,
//! `"2.running_mean"`, `"2.num_batches_tracked"` as int64), so that
//! `model.load_state_dict(safetensors.torch.load_file(path))` works on the same layer list.
//! The metadata holds `emsim_config` (the model config JSON), `format = "pt"` and `generator`.
//! Training checkpoints add the optimizer state as `optimizer.<name>.exp_avg`, `.exp_avg_sq`,
//! `.max_exp_avg_sq` and metadata `emsim_train_state` (JSON).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::net::model::{Model, ModelConfig};
use crate::{Error, Result};

/// Optimizer state of one tensor (Adam's moments).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimState {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub vmax: Vec<f32>,
}

/// Serializes a model (and optionally the optimizer state and a train-state JSON) to bytes.
pub fn to_bytes(model: &Model, optim: Option<(&[OptimState], &str)>) -> Result<Vec<u8>> {
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for t in &model.tensors {
        owned.push((t.name.clone(), Dtype::F32, t.shape.clone(), bytemuck::cast_slice(&t.data).to_vec()));
    }
    for (i, lt) in model.layer_tensors.iter().enumerate() {
        if lt.running_mean.is_some() {
            owned.push((
                format!("{i}.num_batches_tracked"),
                Dtype::I64,
                vec![],
                model.batches_tracked.to_le_bytes().to_vec(),
            ));
        }
    }
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert("generator".to_string(), crate::generator());
    meta.insert(
        "emsim_config".to_string(),
        serde_json::to_string(&model.cfg).map_err(|e| Error::Other(format!("model config: {e}")))?,
    );
    if let Some((states, train_state)) = optim {
        assert_eq!(states.len(), model.tensors.len());
        for (t, s) in model.tensors.iter().zip(states) {
            if !t.trainable {
                continue;
            }
            for (suffix, data) in [("exp_avg", &s.m), ("exp_avg_sq", &s.v), ("max_exp_avg_sq", &s.vmax)] {
                owned.push((
                    format!("optimizer.{}.{suffix}", t.name),
                    Dtype::F32,
                    t.shape.clone(),
                    bytemuck::cast_slice(data).to_vec(),
                ));
            }
        }
        meta.insert("emsim_train_state".to_string(), train_state.to_string());
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(name, dt, shape, data)| {
            TensorView::new(*dt, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Other(format!("{name}: {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::tensor::serialize(views, Some(meta)).map_err(|e| Error::Other(format!("safetensors: {e}")))
}

/// Writes a model atomically (temporary name, then rename).
pub fn save(model: &Model, optim: Option<(&[OptimState], &str)>, path: &Path, force: bool, flag: &str) -> Result<()> {
    let out = crate::io::atomic::Output::new(path, force, flag)?;
    let bytes = to_bytes(model, optim)?;
    std::fs::write(out.tmp(), bytes).map_err(|e| Error::file(path, e))?;
    out.commit()?;
    Ok(())
}

/// A model read back, with the optimizer state and train state when the file is a checkpoint.
pub struct Loaded {
    pub model: Model,
    pub optim: Option<Vec<OptimState>>,
    pub train_state: Option<String>,
}

/// Reads a model file. `expect`: the preset/config it must match (names, shapes, config), if any.
pub fn load(path: &Path, expect: Option<&ModelConfig>) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read model: {e}")))?;
    from_bytes(&bytes, expect).map_err(|e| match e {
        Error::Other(m) | Error::Invalid { message: m, .. } => Error::file(path, m),
        other => other,
    })
}

/// Parses a model from safetensors bytes; see [`load`].
pub fn from_bytes(bytes: &[u8], expect: Option<&ModelConfig>) -> Result<Loaded> {
    let bad = |m: String| Error::Other(m);
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("corrupt safetensors: {e}")))?;
    let info = meta.metadata().clone().unwrap_or_default();
    let cfg_json = info
        .get("emsim_config")
        .ok_or_else(|| bad("no 'emsim_config' in the safetensors metadata: not an emsim model".into()))?;
    let cfg: ModelConfig = serde_json::from_str(cfg_json).map_err(|e| bad(format!("bad emsim_config: {e}")))?;
    cfg.validate().map_err(|e| bad(e.to_string()))?;
    if let Some(want) = expect
        && want != &cfg
    {
        return Err(bad(format!(
            "model is '{}' (input {}px, head {:?}, {} layers), expected '{}' (input {}px, head {:?}, {} layers)",
            cfg.name,
            cfg.input_px,
            cfg.head,
            cfg.layers.len(),
            want.name,
            want.input_px,
            want.head,
            want.layers.len()
        )));
    }
    let mut model = Model::new(cfg, 0).map_err(|e| bad(e.to_string()))?;
    let read_f32 = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let v = st.tensor(name).map_err(|_| bad(format!("tensor '{name}' is missing")))?;
        if v.dtype() != Dtype::F32 {
            return Err(bad(format!("tensor '{name}' is {:?}, expected F32", v.dtype())));
        }
        if v.shape() != shape {
            return Err(bad(format!("tensor '{name}' has shape {:?}, expected {:?}", v.shape(), shape)));
        }
        let data: Vec<f32> = v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(bad(format!("tensor '{name}' element {i} is not finite")));
        }
        Ok(data)
    };
    for t in model.tensors.iter_mut() {
        t.data = read_f32(&t.name, &t.shape)?;
    }
    for (i, lt) in model.layer_tensors.iter().enumerate() {
        if lt.running_mean.is_some() {
            let name = format!("{i}.num_batches_tracked");
            if let Ok(v) = st.tensor(&name)
                && v.dtype() == Dtype::I64
                && v.data().len() == 8
            {
                model.batches_tracked = i64::from_le_bytes(v.data().try_into().unwrap());
            }
        }
    }
    let expected: std::collections::HashSet<String> = model
        .tensors
        .iter()
        .map(|t| t.name.clone())
        .chain(
            model
                .layer_tensors
                .iter()
                .enumerate()
                .filter(|(_, l)| l.running_mean.is_some())
                .map(|(i, _)| format!("{i}.num_batches_tracked")),
        )
        .collect();
    if let Some(extra) = st.names().into_iter().find(|n| !n.starts_with("optimizer.") && !expected.contains(*n)) {
        return Err(bad(format!("unexpected tensor '{extra}' for model '{}'", model.cfg.name)));
    }
    let train_state = info.get("emsim_train_state").cloned();
    let optim = if train_state.is_some() {
        let mut states = Vec::with_capacity(model.tensors.len());
        for t in &model.tensors {
            if !t.trainable {
                states.push(OptimState { m: vec![], v: vec![], vmax: vec![] });
                continue;
            }
            let g = |s: &str| read_f32(&format!("optimizer.{}.{s}", t.name), &t.shape);
            states.push(OptimState { m: g("exp_avg")?, v: g("exp_avg_sq")?, vmax: g("max_exp_avg_sq")? });
        }
        Some(states)
    } else {
        None
    };
    Ok(Loaded { model, optim, train_state })
}
