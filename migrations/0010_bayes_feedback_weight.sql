-- How many messages one learned message counts as: 1 for training and autolearn,
-- bayes.feedback_weight for an operator's correction (release or delete with learning,
-- `portcullis bayes learn`). Kept so a move to the other class takes back exactly what the
-- first learning added.
ALTER TABLE bayes_learned ADD COLUMN weight INTEGER NOT NULL DEFAULT 1;
