"""The model release: building, combining, calibrating, measuring and carding a packed model, as
the shipped default model (``pipeline/default_model/``) was made. ``senbert release`` runs it
(``cli/release.py``); ``scripts/rebuild_default_model.sh`` runs every step of the default's.

- :mod:`.recipe`: a part's recipe and the defaults of the default model (no torch: the command
  line reads them);
- :mod:`.build`: one *part*, the packed model of one recipe: train its seeds (resumable), pack,
  calibrate, measure, card (:func:`.build.build_part`); refit the calibration of a packed part
  without training (:func:`.build.recalibrate`); rewrite its card only (:func:`.build.card_only`);
- :mod:`.combine`: the members of several parts packed into one ensemble, calibrated, measured
  and carded (:func:`.combine.combine_parts`): the shipped default combines two;
- :mod:`.measure`: what a card states: the calibration fitted on MOSI train
  (``pipeline.models.calibration.fit_on_train``, the same fit as a run's), the figures on MOSI
  valid, MOSEI valid and MOSI valid with each clip read alone (valid splits only);
- :mod:`.card`: the text of the model cards.

Benchmarks that only measure stay in ``bench/``.
"""
