-- The metadata store's schema as the previous release's MetadataStore.create_schema() made it (commit d4a9872,
-- before migrations), dumped from the database itself (MariaDB 10.11: SHOW CREATE TABLE). Frozen: never edit.
-- tests/unit/metadata/test_migrate.py builds a database from it and upgrades it with alpr db upgrade.

CREATE TABLE `annotation_versions` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(128) NOT NULL,
  `git_rev` varchar(64) NOT NULL,
  `image_count` int(11) NOT NULL,
  `class_counts` longtext NOT NULL CHECK (json_valid(`class_counts`)),
  `description` text NOT NULL,
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uq_annotation_versions_name` (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `pipeline_runs` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(128) NOT NULL,
  `status` varchar(16) NOT NULL,
  `parameters` longtext NOT NULL CHECK (json_valid(`parameters`)),
  `host` varchar(256) NOT NULL,
  `started_at` datetime(6) NOT NULL,
  `finished_at` datetime(6) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uq_pipeline_runs_name` (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `tuning_studies` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(128) NOT NULL,
  `backend` varchar(16) NOT NULL,
  `algorithm` varchar(64) NOT NULL,
  `objective` varchar(64) NOT NULL,
  `direction` varchar(8) NOT NULL,
  `search_space` longtext NOT NULL CHECK (json_valid(`search_space`)),
  `settings` longtext NOT NULL CHECK (json_valid(`settings`)),
  `status` varchar(16) NOT NULL,
  `message` text NOT NULL,
  `best_trial` varchar(128) DEFAULT NULL,
  `best_value` double DEFAULT NULL,
  `best_params` longtext DEFAULT NULL CHECK (json_valid(`best_params`)),
  `started_at` datetime(6) NOT NULL,
  `finished_at` datetime(6) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uq_tuning_studies_name` (`name`),
  CONSTRAINT `ck_tuning_studies_status` CHECK (`status` in ('running','succeeded','failed','timeout')),
  CONSTRAINT `ck_tuning_studies_direction` CHECK (`direction` in ('maximize','minimize'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `images` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `annotation_version_id` int(11) NOT NULL,
  `file_name` varchar(512) NOT NULL,
  `width` int(11) NOT NULL,
  `height` int(11) NOT NULL,
  `md5` varchar(32) NOT NULL,
  `plate_count` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uq_images_annotation_version_id_file_name` (`annotation_version_id`,`file_name`),
  KEY `ix_images_annotation_version_id` (`annotation_version_id`),
  CONSTRAINT `fk_images_annotation_version_id_annotation_versions` FOREIGN KEY (`annotation_version_id`) REFERENCES `annotation_versions` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `training_versions` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(128) NOT NULL,
  `annotation_version_id` int(11) NOT NULL,
  `params_hash` varchar(64) NOT NULL,
  `git_rev` varchar(64) NOT NULL,
  `seed` bigint(20) NOT NULL,
  `train_fraction` double NOT NULL,
  `val_fraction` double NOT NULL,
  `test_fraction` double NOT NULL,
  `counts` longtext NOT NULL CHECK (json_valid(`counts`)),
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uq_training_versions_annotation_version_id_params_hash` (`annotation_version_id`,`params_hash`),
  UNIQUE KEY `uq_training_versions_name` (`name`),
  KEY `ix_training_versions_annotation_version_id` (`annotation_version_id`),
  CONSTRAINT `fk_training_versions_annotation_version_id_annotation_versions` FOREIGN KEY (`annotation_version_id`) REFERENCES `annotation_versions` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `tuning_trials` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `study_id` int(11) NOT NULL,
  `name` varchar(128) NOT NULL,
  `number` int(11) NOT NULL,
  `state` varchar(16) NOT NULL,
  `params` longtext NOT NULL CHECK (json_valid(`params`)),
  `value` double DEFAULT NULL,
  `metrics` longtext NOT NULL CHECK (json_valid(`metrics`)),
  `intermediate` longtext NOT NULL CHECK (json_valid(`intermediate`)),
  `message` text NOT NULL,
  `started_at` datetime(6) DEFAULT NULL,
  `finished_at` datetime(6) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uq_tuning_trials_study_id_name` (`study_id`,`name`),
  KEY `ix_tuning_trials_study_id` (`study_id`),
  CONSTRAINT `fk_tuning_trials_study_id_tuning_studies` FOREIGN KEY (`study_id`) REFERENCES `tuning_studies` (`id`),
  CONSTRAINT `ck_tuning_trials_state` CHECK (`state` in ('running','succeeded','pruned','failed'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `models` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `uri` varchar(1024) NOT NULL,
  `training_version_id` int(11) NOT NULL,
  `run_id` int(11) DEFAULT NULL,
  `config_uri` varchar(1024) NOT NULL,
  `config_hash` varchar(64) NOT NULL,
  `checkpoint` varchar(256) NOT NULL,
  `epoch` int(11) DEFAULT NULL,
  `hyperparameters` longtext NOT NULL CHECK (json_valid(`hyperparameters`)),
  `selected` tinyint(1) NOT NULL,
  `selection_metric` varchar(64) DEFAULT NULL,
  `selection_value` double DEFAULT NULL,
  `selected_at` datetime(6) DEFAULT NULL,
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`),
  KEY `ix_models_run_id` (`run_id`),
  KEY `ix_models_selected` (`selected`),
  KEY `ix_models_training_version_id` (`training_version_id`),
  CONSTRAINT `fk_models_run_id_pipeline_runs` FOREIGN KEY (`run_id`) REFERENCES `pipeline_runs` (`id`),
  CONSTRAINT `fk_models_training_version_id_training_versions` FOREIGN KEY (`training_version_id`) REFERENCES `training_versions` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `splits` (
  `training_version_id` int(11) NOT NULL,
  `image_id` int(11) NOT NULL,
  `split` varchar(8) NOT NULL,
  PRIMARY KEY (`training_version_id`,`image_id`),
  KEY `ix_splits_image_id` (`image_id`),
  CONSTRAINT `fk_splits_image_id_images` FOREIGN KEY (`image_id`) REFERENCES `images` (`id`),
  CONSTRAINT `fk_splits_training_version_id_training_versions` FOREIGN KEY (`training_version_id`) REFERENCES `training_versions` (`id`),
  CONSTRAINT `ck_splits_split` CHECK (`split` in ('train','val','test'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `deployments` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `model_id` int(11) NOT NULL,
  `run_id` int(11) DEFAULT NULL,
  `target` varchar(256) NOT NULL,
  `action` varchar(16) NOT NULL,
  `reason` text NOT NULL,
  `new_eir` double DEFAULT NULL,
  `served_eir` double DEFAULT NULL,
  `served_model_id` int(11) DEFAULT NULL,
  `storage_uri` varchar(1024) NOT NULL,
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`),
  KEY `ix_deployments_run_id` (`run_id`),
  KEY `ix_deployments_target` (`target`),
  KEY `ix_deployments_model_id` (`model_id`),
  KEY `ix_deployments_served_model_id` (`served_model_id`),
  CONSTRAINT `fk_deployments_model_id_models` FOREIGN KEY (`model_id`) REFERENCES `models` (`id`),
  CONSTRAINT `fk_deployments_run_id_pipeline_runs` FOREIGN KEY (`run_id`) REFERENCES `pipeline_runs` (`id`),
  CONSTRAINT `fk_deployments_served_model_id_models` FOREIGN KEY (`served_model_id`) REFERENCES `models` (`id`),
  CONSTRAINT `ck_deployments_action` CHECK (`action` in ('deployed','skipped','failed'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `evaluations` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `model_id` int(11) NOT NULL,
  `run_id` int(11) DEFAULT NULL,
  `split` varchar(8) NOT NULL,
  `metrics` longtext NOT NULL CHECK (json_valid(`metrics`)),
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`),
  KEY `ix_evaluations_run_id` (`run_id`),
  KEY `ix_evaluations_model_id` (`model_id`),
  CONSTRAINT `fk_evaluations_model_id_models` FOREIGN KEY (`model_id`) REFERENCES `models` (`id`),
  CONSTRAINT `fk_evaluations_run_id_pipeline_runs` FOREIGN KEY (`run_id`) REFERENCES `pipeline_runs` (`id`),
  CONSTRAINT `ck_evaluations_split` CHECK (`split` in ('train','val','test'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `test_results` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `model_id` int(11) NOT NULL,
  `run_id` int(11) DEFAULT NULL,
  `file_name` varchar(512) NOT NULL,
  `truth` longtext NOT NULL CHECK (json_valid(`truth`)),
  `reading` longtext NOT NULL CHECK (json_valid(`reading`)),
  `exact` tinyint(1) NOT NULL,
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`),
  KEY `ix_test_results_run_id` (`run_id`),
  KEY `ix_test_results_model_id` (`model_id`),
  CONSTRAINT `fk_test_results_model_id_models` FOREIGN KEY (`model_id`) REFERENCES `models` (`id`),
  CONSTRAINT `fk_test_results_run_id_pipeline_runs` FOREIGN KEY (`run_id`) REFERENCES `pipeline_runs` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `evaluation_metrics` (
  `evaluation_id` int(11) NOT NULL,
  `name` varchar(64) NOT NULL,
  `value` double DEFAULT NULL,
  PRIMARY KEY (`evaluation_id`,`name`),
  KEY `ix_evaluation_metrics_name` (`name`),
  CONSTRAINT `fk_evaluation_metrics_evaluation_id_evaluations` FOREIGN KEY (`evaluation_id`) REFERENCES `evaluations` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
