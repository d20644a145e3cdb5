"""fleet: long analysis jobs split into segments, run by GPU workers on Celery + RabbitMQ.

::

    store = JobStore.connect("redis://127.0.0.1:6379/0")
    job = submit_job(store, dispatcher, "archive/cam1.mp4")   # split, stored, published
    # workers: ``loglog worker --broker amqp://…`` run segments through the inference pipeline
    store.get(job.id).progress                                  # 0.0 … 1.0, with an ETA

The parts: :mod:`fleet.model` (jobs, segments, splitting), :mod:`fleet.store` (job state in
Redis), :mod:`fleet.results` (idempotent JSON-lines results), :mod:`fleet.sources` (finite
frame sources), :mod:`fleet.celeryapp` (the broker settings), :mod:`fleet.worker`,
:mod:`fleet.dispatch`, :mod:`fleet.api`, :mod:`fleet.metrics`.
"""
