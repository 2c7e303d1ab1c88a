"""Commands on a user's image files rather than a dataset: a defense applied to them (:mod:`.defend`),
the background-only attack (:mod:`.background`), and image files <-> tensors (:mod:`.imageio`)."""
