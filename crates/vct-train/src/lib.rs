//! Recipes, the trainer loop, metrics and checkpoints for vct templates.
