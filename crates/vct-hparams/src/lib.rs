//! Template names and typed hyperparameters for vct: defaults, ranges, validation and JSON Schema.
