//! Every registered kernel parses and validates with naga (no GPU needed), and its bindings (kind,
//! WGSL variable name, uniform type) and workgroup size match the registry in src/shaders.rs.

use emsim::shaders::{ALL, Access, Binding};
use naga::common::wgsl::TypeContext;

/// A binding as `(variable name, access)`, the access as `uniform <type>`, `read` or `read_write`.
fn describe(b: &Binding) -> (String, String) {
    let access = match b.access {
        Access::Uniform { ty } => format!("uniform {ty}"),
        Access::StorageRead => "read".to_string(),
        Access::StorageReadWrite => "read_write".to_string(),
    };
    (b.name.to_string(), access)
}

#[test]
fn every_kernel_validates_and_matches_the_registry() {
    assert!(!ALL.is_empty());
    for k in ALL {
        let module = naga::front::wgsl::parse_str(k.source)
            .unwrap_or_else(|e| panic!("{}: {}", k.name, e.emit_to_string(k.source)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e:?}", k.name));
        let entry = module
            .entry_points
            .iter()
            .find(|e| e.name == "main")
            .unwrap_or_else(|| panic!("{}: no entry point main", k.name));
        assert_eq!(entry.stage, naga::ShaderStage::Compute, "{}", k.name);
        assert_eq!(entry.workgroup_size, [k.workgroup_size, 1, 1], "{}: workgroup size", k.name);
        let mut found = vec![None; k.bindings.len()];
        for (_, var) in module.global_variables.iter() {
            let Some(rb) = &var.binding else { continue };
            assert_eq!(rb.group, 0, "{}: bind group", k.name);
            let name = var.name.clone().unwrap_or_else(|| panic!("{}: binding {} has no name", k.name, rb.binding));
            let access = match var.space {
                naga::AddressSpace::Uniform => {
                    // A struct by its name; any other type (conv2d's weight array) as written.
                    let ty = &module.types[var.ty];
                    match (&ty.inner, &ty.name) {
                        (naga::TypeInner::Struct { .. }, Some(ty)) => format!("uniform {ty}"),
                        (naga::TypeInner::Struct { .. }, None) => panic!("{}: {name}: unnamed struct", k.name),
                        _ => format!("uniform {}", module.to_ctx().type_to_string(var.ty)),
                    }
                }
                naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => {
                    "read_write".to_string()
                }
                naga::AddressSpace::Storage { .. } => "read".to_string(),
                other => panic!("{}: unexpected address space {other:?}", k.name),
            };
            let slot = found
                .get_mut(rb.binding as usize)
                .unwrap_or_else(|| panic!("{}: binding {} ({name}) not in registry", k.name, rb.binding));
            *slot = Some((name, access));
        }
        for (i, (wgsl, registry)) in found.into_iter().zip(k.bindings).enumerate() {
            let wgsl = wgsl.unwrap_or_else(|| panic!("{}: binding {i} ({}) missing in WGSL", k.name, registry.name));
            assert_eq!(wgsl, describe(registry), "{}: binding {i} (WGSL left, registry right)", k.name);
        }
    }
}

/// A dispatch must name its buffers as the registry does, in `@binding` order
/// (`GpuContext::dispatch` panics with this message otherwise).
#[test]
fn dispatch_buffer_names_are_checked_against_the_registry() {
    use emsim::shaders::{FRAMES_PLACE, check_binding_names};
    for k in ALL {
        let names: Vec<&str> = k.bindings.iter().map(|b| b.name).collect();
        assert_eq!(check_binding_names(k, &names), Ok(()), "{}", k.name);
    }
    let e = check_binding_names(&FRAMES_PLACE, &["params", "offsets", "records"]).unwrap_err();
    assert_eq!(e, "kernel frames/place: binding 1 is 'frame_offsets', but the dispatch passed 'offsets'");
    // swapped buffers are caught at the first position that differs
    let e = check_binding_names(&FRAMES_PLACE, &["params", "records", "frame_offsets"]).unwrap_err();
    assert_eq!(e, "kernel frames/place: binding 1 is 'frame_offsets', but the dispatch passed 'records'");
    let e = check_binding_names(&FRAMES_PLACE, &["params", "frame_offsets"]).unwrap_err();
    assert_eq!(
        e,
        "kernel frames/place takes 3 buffers (params, frame_offsets, records), but the dispatch passed 2 \
         (params, frame_offsets)"
    );
}

/// Uniform structs have the size the Rust mirrors assert (16-byte multiples, no vec3).
#[test]
fn param_struct_sizes_match() {
    let expect = [
        ("events/collect", "CollectParams", 96u32),
        ("frames/place", "PlaceParams", 48),
        ("frames/accumulate", "AccumulateParams", 32),
        ("frames/noise", "NoiseParams", 64),
        ("count/calibrate", "CalibrateParams", 32),
        ("count/sum3", "Sum3Params", 16),
        ("count/find", "FindParams", 48),
        ("count/args", "ArgsParams", 16),
        ("count/localize", "LocalizeParams", 16),
        ("count/localize", "Localized", 48),
    ];
    for (kernel, name, size) in expect {
        let k = ALL.iter().find(|k| k.name == kernel).unwrap();
        let module = naga::front::wgsl::parse_str(k.source).unwrap();
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let (handle, _) =
            module.types.iter().find(|(_, t)| t.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(layouter[handle].size, size, "{name}");
    }
}

/// Every uniform struct of every kernel has a Rust mirror with the same size and the same member
/// offsets, member by member and by name (naga's layouter gives the WGSL side; `offset_of!` the
/// Rust side). A uniform struct without a mirror in this table fails the test.
/// A Rust struct's name, size and `(member name, offset)` list.
type Mirror = (String, u32, Vec<(&'static str, u32)>);

#[test]
fn every_uniform_struct_matches_its_rust_mirror() {
    /// (struct name, size, [(field name, offset)]) of a `#[repr(C)]` Rust struct.
    macro_rules! mirror {
        ($path:path { $($field:ident),* $(,)? }) => {{
            type T = $path;
            let name = stringify!($path).rsplit("::").next().unwrap().trim().to_string();
            (name, std::mem::size_of::<T>() as u32, vec![$((stringify!($field), std::mem::offset_of!(T, $field) as u32)),*])
        }};
    }
    let mirrors: Vec<Mirror> = vec![
        mirror!(emsim::frames::accumulate::AccumulateParams {
            n_electrons,
            height,
            width,
            row0,
            band_rows,
            _pad0,
            _pad1,
            _pad2
        }),
        mirror!(emsim::net::optim::AdamParams {
            n,
            flags,
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            step_size,
            inv_sqrt_bc2,
            _pad0,
            _pad1,
            _pad2
        }),
        mirror!(emsim::count::localize::ArgsParams { capacity, wg_size, per_dim, _pad0 }),
        mirror!(emsim::net::batchnorm2d::BatchNorm2dParams {
            c,
            hw,
            m,
            len,
            chunk,
            n_chunks,
            _pad0,
            _pad1,
            eps,
            momentum,
            keep,
            unbias
        }),
        mirror!(emsim::count::calibrate::CalibrateParams {
            n_values,
            frame_px,
            use_dark,
            use_gain_map,
            offset_adu,
            inv_gain,
            _pad0,
            _pad1
        }),
        mirror!(emsim::events::physics::collect::CollectParams {
            n_events,
            window_half,
            side,
            _pad0,
            pitch_um,
            field_free_um,
            reach_um,
            _pad1,
            weights
        }),
        mirror!(emsim::net::conv2d::Conv2dParams {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            pad,
            stride,
            out_h,
            out_w,
            n_ch_blocks,
            chunk_rows,
            n_chunks,
            blk_groups,
            x_groups
        }),
        mirror!(emsim::net::crop::CropParams { n, first, side, height, width, scale, _pad0, _pad1 }),
        mirror!(emsim::net::decode::DecodeGridParams { n, g, radius, _pad0, origin, cell, _pad1, _pad2 }),
        mirror!(emsim::net::mlp_gpu::MlpCountParams {
            n,
            first,
            side,
            height,
            width,
            scale,
            layers,
            g,
            radius,
            origin,
            cell,
            _pad0,
            dims
        }),
        mirror!(emsim::net::dropout::DropoutParams { n, step_lo, step_hi, stream, key_lo, key_hi, p, scale }),
        mirror!(emsim::count::find::FindParams {
            n_frames,
            height,
            width,
            thr_q,
            xray_q,
            suppress_px,
            capacity,
            finder,
            faint_q,
            faint_sum_q,
            _pad0,
            _pad1
        }),
        mirror!(emsim::net::data::GridLabelParams { n, stride, grid_cells, cells_per_px, origin, _pad0, _pad1, _pad2 }),
        mirror!(emsim::net::linear::LinearParams { n, in_f, out_f, chunk_rows, n_chunks, o_blocks, relu, _pad2 }),
        mirror!(emsim::count::localize::LocalizeParams { height, width, capacity, centroid_thr_q }),
        mirror!(emsim::net::data::MakeBatchParams {
            n,
            side,
            first_lo,
            first_hi,
            key_lo,
            key_hi,
            ev_lo,
            ev_count,
            shift,
            grid_cells,
            cells_per_px,
            grid_origin,
            sigma_e,
            input_scale,
            _pad0,
            _pad1
        }),
        mirror!(emsim::net::pairs::MakePairsParams {
            n,
            side,
            first_lo,
            first_hi,
            key_lo,
            key_hi,
            ev_lo,
            ev_count,
            shift,
            max_sep,
            p_two,
            sigma_e,
            input_scale,
            extra_mean,
            extra_max,
            extra_p0
        }),
        mirror!(emsim::net::maxpool2d::MaxPool2dParams { planes, h, w, oh, ow, k, stride, _pad0 }),
        mirror!(emsim::net::loss::MseParams { n, d, mean_over, write_grad }),
        mirror!(emsim::frames::noise::NoiseParams {
            n_frames,
            width,
            row0,
            band_rows,
            first_frame_lo,
            first_frame_hi,
            key_lo,
            key_hi,
            sigma_e,
            gain_adu_per_e,
            offset_adu,
            quantize,
            first_group,
            n_groups,
            _pad0,
            _pad1
        }),
        mirror!(emsim::net::loss::PairMseParams { n, mean_over, write_grad, _pad }),
        mirror!(emsim::frames::place::PlaceParams {
            n_electrons,
            n_frames,
            first_frame_lo,
            first_frame_hi,
            key_lo,
            key_hi,
            n_events,
            height,
            width,
            electron_base,
            _pad0,
            _pad1
        }),
        mirror!(emsim::net::reduce::ReduceChunksParams { n_params, n_chunks, n_split, _pad0 }),
        mirror!(emsim::net::relu::ReluParams { n, _pad0, _pad1, _pad2 }),
        mirror!(emsim::net::loss::SoftmaxXentParams { n, k, mean_over, write_grad }),
        mirror!(emsim::count::sum3::Sum3Params { n_frames, height, width, _pad0 }),
    ];
    let mut checked = std::collections::BTreeSet::new();
    let mut errors = Vec::new();
    for k in ALL {
        let module = naga::front::wgsl::parse_str(k.source).unwrap();
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        for (_, var) in module.global_variables.iter() {
            if var.space != naga::AddressSpace::Uniform {
                continue;
            }
            let ty = &module.types[var.ty];
            let naga::TypeInner::Struct { members, .. } = &ty.inner else { continue };
            let name = ty.name.clone().unwrap_or_default();
            let Some((_, size, fields)) = mirrors.iter().find(|(n, _, _)| *n == name) else {
                errors.push(format!("{}: uniform struct {name} has no Rust mirror in this test", k.name));
                continue;
            };
            if layouter[var.ty].size != *size {
                errors.push(format!("{}: {name} is {} bytes in WGSL, {size} in Rust", k.name, layouter[var.ty].size));
            }
            let wgsl: Vec<(&str, u32)> = members.iter().map(|m| (m.name.as_deref().unwrap_or(""), m.offset)).collect();
            if wgsl != *fields {
                errors.push(format!(
                    "{}: {name} members (name, offset) differ:\n  WGSL {wgsl:?}\n  Rust {fields:?}",
                    k.name
                ));
            }
            checked.insert(name);
        }
    }
    errors.dedup();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert_eq!(
        checked.len(),
        mirrors.len(),
        "mirrors without a kernel: {:?}",
        mirrors.iter().map(|m| &m.0).filter(|n| !checked.contains(*n)).collect::<Vec<_>>()
    );
}
