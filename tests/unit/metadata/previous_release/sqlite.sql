-- The metadata store's schema as the previous release's MetadataStore.create_schema() made it (commit d4a9872,
-- before migrations), dumped from the database itself (SQLite: sqlite_master, trailing blanks removed). Frozen: never edit.
-- tests/unit/metadata/test_migrate.py builds a database from it and upgrades it with alpr db upgrade.

CREATE TABLE annotation_versions (
	id INTEGER NOT NULL,
	name VARCHAR(128) NOT NULL,
	git_rev VARCHAR(64) NOT NULL,
	image_count INTEGER NOT NULL,
	class_counts JSON NOT NULL,
	description TEXT NOT NULL,
	created_at DATETIME NOT NULL,
	CONSTRAINT pk_annotation_versions PRIMARY KEY (id),
	CONSTRAINT uq_annotation_versions_name UNIQUE (name)
);

CREATE TABLE pipeline_runs (
	id INTEGER NOT NULL,
	name VARCHAR(128) NOT NULL,
	status VARCHAR(16) NOT NULL,
	parameters JSON NOT NULL,
	host VARCHAR(256) NOT NULL,
	started_at DATETIME NOT NULL,
	finished_at DATETIME,
	CONSTRAINT pk_pipeline_runs PRIMARY KEY (id),
	CONSTRAINT uq_pipeline_runs_name UNIQUE (name)
);

CREATE TABLE tuning_studies (
	id INTEGER NOT NULL,
	name VARCHAR(128) NOT NULL,
	backend VARCHAR(16) NOT NULL,
	algorithm VARCHAR(64) NOT NULL,
	objective VARCHAR(64) NOT NULL,
	direction VARCHAR(8) NOT NULL,
	search_space JSON NOT NULL,
	settings JSON NOT NULL,
	status VARCHAR(16) NOT NULL,
	message TEXT NOT NULL,
	best_trial VARCHAR(128),
	best_value DOUBLE,
	best_params JSON,
	started_at DATETIME NOT NULL,
	finished_at DATETIME,
	CONSTRAINT pk_tuning_studies PRIMARY KEY (id),
	CONSTRAINT ck_tuning_studies_status CHECK (status IN ('running', 'succeeded', 'failed', 'timeout')),
	CONSTRAINT ck_tuning_studies_direction CHECK (direction IN ('maximize', 'minimize')),
	CONSTRAINT uq_tuning_studies_name UNIQUE (name)
);

CREATE TABLE images (
	id INTEGER NOT NULL,
	annotation_version_id INTEGER NOT NULL,
	file_name VARCHAR(512) NOT NULL,
	width INTEGER NOT NULL,
	height INTEGER NOT NULL,
	md5 VARCHAR(32) NOT NULL,
	plate_count INTEGER NOT NULL,
	CONSTRAINT pk_images PRIMARY KEY (id),
	CONSTRAINT uq_images_annotation_version_id_file_name UNIQUE (annotation_version_id, file_name),
	CONSTRAINT fk_images_annotation_version_id_annotation_versions FOREIGN KEY(annotation_version_id) REFERENCES annotation_versions (id)
);

CREATE INDEX ix_images_annotation_version_id ON images (annotation_version_id);

CREATE TABLE training_versions (
	id INTEGER NOT NULL,
	name VARCHAR(128) NOT NULL,
	annotation_version_id INTEGER NOT NULL,
	params_hash VARCHAR(64) NOT NULL,
	git_rev VARCHAR(64) NOT NULL,
	seed BIGINT NOT NULL,
	train_fraction DOUBLE NOT NULL,
	val_fraction DOUBLE NOT NULL,
	test_fraction DOUBLE NOT NULL,
	counts JSON NOT NULL,
	created_at DATETIME NOT NULL,
	CONSTRAINT pk_training_versions PRIMARY KEY (id),
	CONSTRAINT uq_training_versions_annotation_version_id_params_hash UNIQUE (annotation_version_id, params_hash),
	CONSTRAINT uq_training_versions_name UNIQUE (name),
	CONSTRAINT fk_training_versions_annotation_version_id_annotation_versions FOREIGN KEY(annotation_version_id) REFERENCES annotation_versions (id)
);

CREATE INDEX ix_training_versions_annotation_version_id ON training_versions (annotation_version_id);

CREATE TABLE tuning_trials (
	id INTEGER NOT NULL,
	study_id INTEGER NOT NULL,
	name VARCHAR(128) NOT NULL,
	number INTEGER NOT NULL,
	state VARCHAR(16) NOT NULL,
	params JSON NOT NULL,
	value DOUBLE,
	metrics JSON NOT NULL,
	intermediate JSON NOT NULL,
	message TEXT NOT NULL,
	started_at DATETIME,
	finished_at DATETIME,
	CONSTRAINT pk_tuning_trials PRIMARY KEY (id),
	CONSTRAINT uq_tuning_trials_study_id_name UNIQUE (study_id, name),
	CONSTRAINT ck_tuning_trials_state CHECK (state IN ('running', 'succeeded', 'pruned', 'failed')),
	CONSTRAINT fk_tuning_trials_study_id_tuning_studies FOREIGN KEY(study_id) REFERENCES tuning_studies (id)
);

CREATE INDEX ix_tuning_trials_study_id ON tuning_trials (study_id);

CREATE TABLE splits (
	training_version_id INTEGER NOT NULL,
	image_id INTEGER NOT NULL,
	split VARCHAR(8) NOT NULL,
	CONSTRAINT pk_splits PRIMARY KEY (training_version_id, image_id),
	CONSTRAINT ck_splits_split CHECK (split IN ('train', 'val', 'test')),
	CONSTRAINT fk_splits_training_version_id_training_versions FOREIGN KEY(training_version_id) REFERENCES training_versions (id),
	CONSTRAINT fk_splits_image_id_images FOREIGN KEY(image_id) REFERENCES images (id)
);

CREATE INDEX ix_splits_image_id ON splits (image_id);

CREATE TABLE models (
	id INTEGER NOT NULL,
	uri VARCHAR(1024) NOT NULL,
	training_version_id INTEGER NOT NULL,
	run_id INTEGER,
	config_uri VARCHAR(1024) NOT NULL,
	config_hash VARCHAR(64) NOT NULL,
	checkpoint VARCHAR(256) NOT NULL,
	epoch INTEGER,
	hyperparameters JSON NOT NULL,
	selected BOOLEAN NOT NULL,
	selection_metric VARCHAR(64),
	selection_value DOUBLE,
	selected_at DATETIME,
	created_at DATETIME NOT NULL,
	CONSTRAINT pk_models PRIMARY KEY (id),
	CONSTRAINT fk_models_training_version_id_training_versions FOREIGN KEY(training_version_id) REFERENCES training_versions (id),
	CONSTRAINT fk_models_run_id_pipeline_runs FOREIGN KEY(run_id) REFERENCES pipeline_runs (id)
);

CREATE INDEX ix_models_run_id ON models (run_id);

CREATE INDEX ix_models_selected ON models (selected);

CREATE INDEX ix_models_training_version_id ON models (training_version_id);

CREATE TABLE evaluations (
	id INTEGER NOT NULL,
	model_id INTEGER NOT NULL,
	run_id INTEGER,
	split VARCHAR(8) NOT NULL,
	metrics JSON NOT NULL,
	created_at DATETIME NOT NULL,
	CONSTRAINT pk_evaluations PRIMARY KEY (id),
	CONSTRAINT ck_evaluations_split CHECK (split IN ('train', 'val', 'test')),
	CONSTRAINT fk_evaluations_model_id_models FOREIGN KEY(model_id) REFERENCES models (id),
	CONSTRAINT fk_evaluations_run_id_pipeline_runs FOREIGN KEY(run_id) REFERENCES pipeline_runs (id)
);

CREATE INDEX ix_evaluations_run_id ON evaluations (run_id);

CREATE INDEX ix_evaluations_model_id ON evaluations (model_id);

CREATE TABLE test_results (
	id INTEGER NOT NULL,
	model_id INTEGER NOT NULL,
	run_id INTEGER,
	file_name VARCHAR(512) NOT NULL,
	truth JSON NOT NULL,
	reading JSON NOT NULL,
	exact BOOLEAN NOT NULL,
	created_at DATETIME NOT NULL,
	CONSTRAINT pk_test_results PRIMARY KEY (id),
	CONSTRAINT fk_test_results_model_id_models FOREIGN KEY(model_id) REFERENCES models (id),
	CONSTRAINT fk_test_results_run_id_pipeline_runs FOREIGN KEY(run_id) REFERENCES pipeline_runs (id)
);

CREATE INDEX ix_test_results_run_id ON test_results (run_id);

CREATE INDEX ix_test_results_model_id ON test_results (model_id);

CREATE TABLE deployments (
	id INTEGER NOT NULL,
	model_id INTEGER NOT NULL,
	run_id INTEGER,
	target VARCHAR(256) NOT NULL,
	action VARCHAR(16) NOT NULL,
	reason TEXT NOT NULL,
	new_eir DOUBLE,
	served_eir DOUBLE,
	served_model_id INTEGER,
	storage_uri VARCHAR(1024) NOT NULL,
	created_at DATETIME NOT NULL,
	CONSTRAINT pk_deployments PRIMARY KEY (id),
	CONSTRAINT ck_deployments_action CHECK (action IN ('deployed', 'skipped', 'failed')),
	CONSTRAINT fk_deployments_model_id_models FOREIGN KEY(model_id) REFERENCES models (id),
	CONSTRAINT fk_deployments_run_id_pipeline_runs FOREIGN KEY(run_id) REFERENCES pipeline_runs (id),
	CONSTRAINT fk_deployments_served_model_id_models FOREIGN KEY(served_model_id) REFERENCES models (id)
);

CREATE INDEX ix_deployments_run_id ON deployments (run_id);

CREATE INDEX ix_deployments_target ON deployments (target);

CREATE INDEX ix_deployments_model_id ON deployments (model_id);

CREATE INDEX ix_deployments_served_model_id ON deployments (served_model_id);

CREATE TABLE evaluation_metrics (
	evaluation_id INTEGER NOT NULL,
	name VARCHAR(64) NOT NULL,
	value DOUBLE,
	CONSTRAINT pk_evaluation_metrics PRIMARY KEY (evaluation_id, name),
	CONSTRAINT fk_evaluation_metrics_evaluation_id_evaluations FOREIGN KEY(evaluation_id) REFERENCES evaluations (id)
);

CREATE INDEX ix_evaluation_metrics_name ON evaluation_metrics (name);
