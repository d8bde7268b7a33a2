//! Architecture names, families and input conventions.

use vct_arch::{Arch, Family};

#[test]
fn names_round_trip_and_unknown_names_list_the_choices() {
    for a in Arch::ALL {
        assert_eq!(Arch::from_name(a.name()).unwrap(), a);
    }
    let err = Arch::from_name("resnet51").unwrap_err().to_string();
    assert!(
        err.contains("resnet51") && err.contains("resnext50_32x4d") && err.contains("bninception"),
        "{err}"
    );
}

#[test]
fn checkpoint_key_dialects_map_to_torchvision_names() {
    let f = Family::ResNet;
    assert_eq!(
        f.map_key("backbone.layer1.0.conv1.weight").as_deref(),
        Some("layer1.0.conv1.weight")
    );
    assert_eq!(f.map_key("head.fc.bias").as_deref(), Some("fc.bias"));
    assert_eq!(f.map_key("module.fc.weight").as_deref(), Some("fc.weight"));
    assert_eq!(f.map_key("bn1.num_batches_tracked"), None);
    assert_eq!(
        Family::BnInception
            .map_key("module.inception_3a_1x1.weight")
            .as_deref(),
        Some("inception_3a_1x1.weight")
    );
    // Only the ResNet family knows mmpretrain's prefixes.
    assert_eq!(
        Family::BnInception.map_key("backbone.x").as_deref(),
        Some("backbone.x")
    );
}

#[test]
fn pretrained_input_conventions() {
    let bn = Arch::BnInception.input_norm();
    assert!(bn.bgr && bn.scale == 255.0 && bn.mean == [104.0, 117.0, 128.0] && bn.std == [1.0; 3]);
    let r = Arch::ResNeXt50_32x4d.input_norm();
    assert!(!r.bgr && r.scale == 1.0 && r.mean[0] == 0.485 && r.std[2] == 0.225);
}
