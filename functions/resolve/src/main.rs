//! The resolve Lambda: reads configuration once per cold start, builds the clients, and
//! hands requests to [`tm_resolve::ResolveHandler`].

fn main() {
    // Wiring to the AWS backends (DynamoDB, Redis) lands with the production adapters;
    // until then the binary refuses to start rather than serve a fake store.
    eprintln!("tm-resolve: the AWS adapters are not built yet; use tm-local");
    std::process::exit(2);
}
