"""The collector agent an institution deploys: configuration, traffic sources, pseudonymisation, on-disk spool, signed publishing to Kafka."""
