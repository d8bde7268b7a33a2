//! Learning-rate schedules as pure functions of the step: warmup + cosine, step decay, constant.
