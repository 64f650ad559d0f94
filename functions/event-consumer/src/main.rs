//! The event-consumer Lambda: reads configuration once per cold start, builds the
//! clients, and hands MSK batches to [`tm_event_consumer::ConsumerHandler`].

fn main() {
    // Wiring to the AWS backends (Redis, the Kafka dead-letter producer) lands with the
    // production adapters; until then the binary refuses to start.
    eprintln!("tm-event-consumer: the AWS adapters are not built yet; use tm-local");
    std::process::exit(2);
}
