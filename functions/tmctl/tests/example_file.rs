//! The example routes file in docs/ parses: the docs show a file tmctl accepts.

#[test]
fn the_documented_example_routes_file_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/examples/routes.yaml"
    );
    let text = std::fs::read_to_string(path).expect("docs/examples/routes.yaml");
    let d = tmctl::spec::parse(&text, "docs/examples/routes.yaml").expect("valid");
    assert_eq!(d.tenant, "acme");
    assert_eq!(d.routes.len(), 3);
}
