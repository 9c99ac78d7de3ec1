//! Every registered kernel parses and validates with naga (no GPU needed), and its bindings and
//! workgroup size match the registry in src/shaders.rs.

use emsim::shaders::{ALL, Binding};

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
            let kind = match var.space {
                naga::AddressSpace::Uniform => Binding::Uniform,
                naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => {
                    Binding::StorageReadWrite
                }
                naga::AddressSpace::Storage { .. } => Binding::StorageRead,
                other => panic!("{}: unexpected address space {other:?}", k.name),
            };
            let slot = found
                .get_mut(rb.binding as usize)
                .unwrap_or_else(|| panic!("{}: binding {} not in registry", k.name, rb.binding));
            *slot = Some(kind);
        }
        let found: Vec<Binding> =
            found.into_iter().map(|b| b.unwrap_or_else(|| panic!("{}: binding missing in WGSL", k.name))).collect();
        assert_eq!(found, k.bindings, "{}: bindings", k.name);
    }
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
        ("count/find", "FindParams", 32),
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
