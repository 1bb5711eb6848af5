#pragma once

// Evaluation of a face recogniser, independent of how its embeddings are made: the LFW View-2
// pairs protocol, verification metrics over similarity scores (higher = more similar), all-pairs
// genuine/impostor scoring of an embedding matrix, DET plots, and a cache of embeddings so that a
// rerun with the same recogniser does not recompute them.
//
// Conventions used throughout:
//  - A comparison is accepted ("match") iff score >= threshold.
//  - FMR (false match rate) = fraction of impostor scores accepted; FNMR (false non-match rate) =
//    fraction of genuine scores rejected.
//  - Scores must not be NaN or +infinity. A comparison that could not be made (no face found in
//    an image) is scored -infinity: it is rejected at every threshold this file produces, so it
//    counts as a non-match, which is what a deployed system would do.
//
// Every function here is thread-compatible: it keeps no state between calls, so distinct calls
// may run concurrently.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "facelogin/population.h"
#include "facelogin/status.h"

namespace facelogin::eval {

// ---------------------------------------------------------------------------------------------
// LFW pairs (View 2)

// One line of a pairs file.
struct Pair {
  int fold = 0;        // 0-based fold index
  std::string first;   // image key, "Name/Name_0001.jpg"
  std::string second;  // image key
  bool same = false;   // true: both images show the same person
};

struct PairsProtocol {
  int folds = 0;
  int pairs_per_fold = 0;  // of each kind: a fold has this many same and this many different
  // In file order: fold 0's same pairs, fold 0's different pairs, fold 1's same pairs, ...
  std::vector<Pair> pairs;
};

// The image key (relative path below the LFW images folder) of image `number` (1-based) of
// `name`: lfw_image_key("Zico", 2) == "Zico/Zico_0002.jpg".
[[nodiscard]] std::string lfw_image_key(std::string_view name, int number);

// The person's name part of an image key ("Zico/Zico_0002.jpg" -> "Zico"); the whole key if it
// has no '/'.
[[nodiscard]] std::string_view key_identity(std::string_view key);

// Parses the text of an LFW View-2 pairs file: a header line "<folds> <pairs_per_fold>", then
// for each fold `pairs_per_fold` same-person lines "name i j" followed by `pairs_per_fold`
// different-person lines "name1 i name2 j" (fields separated by tabs or spaces; "\r\n" line ends
// and trailing blank lines are accepted). Names must be non-empty printable ASCII without '/',
// '\\' or a leading '.', so that a key is always a path below the images folder. Image numbers
// are 1..9999; a same-person line must name two different images, a different-person line two
// different names.
// Errors: kInvalidArgument naming the line (1-based) and what was wrong, for a missing or
// malformed header, a malformed line, or too few or too many lines.
[[nodiscard]] Result<PairsProtocol> parse_pairs(std::string_view text);

// Reads and parses a pairs file (at most 64 MiB). Errors: kNotFound, kIoError, and those of
// parse_pairs (the message then names the file).
[[nodiscard]] Result<PairsProtocol> read_pairs_file(const std::filesystem::path& path);

// Every image key the pairs name, once each, sorted.
[[nodiscard]] std::vector<std::string> unique_image_keys(std::span<const Pair> pairs);

// The key of every image in an LFW layout below `dir` ("<Name>/<Name>_<NNNN>.jpg", as
// lfw_image_key writes them), sorted; other files and folders are ignored, symlinks are not
// followed. Errors: kNotFound if `dir` is not a directory, kIoError if it cannot be listed.
[[nodiscard]] Result<std::vector<std::string>> list_lfw_images(const std::filesystem::path& dir);

// The key ("<identity>/<file>") of every JPEG or PNG image in identity folders below `dir`
// (`dir/<identity>/<any name>.jpg|.jpeg|.png`, any case; hidden files skipped), sorted: a
// deployment's own calibration set. Symlinks are not followed. Errors: as list_lfw_images.
[[nodiscard]] Result<std::vector<std::string>> list_identity_images(
    const std::filesystem::path& dir);

// ---------------------------------------------------------------------------------------------
// Presentation-attack (spoof) data and rates, ISO/IEC 30107-3 terms

// One frame of a liveness data set in the NUAA layout: ClientRaw/<subject>/ holds bona fide
// (live) frames, ImposterRaw/<subject>/ attacks, each named
// <subject>_<glasses>_<type>_<session>_<frame>.jpg.
struct SpoofFrame {
  std::string key;       // path below the data folder, "ImposterRaw/0001/0001_00_01_02_7.jpg"
  std::string subject;   // "0001"
  bool live = false;     // ClientRaw
  std::string type;      // the <type> field: attack type for attacks ("01"), movement for live
  std::string sequence;  // "<subject>_<glasses>_<type>_<session>": frames of one recording
  int frame = 0;
};

// Every frame of the layout, sorted by (live first) sequence, then frame number. Files that do
// not follow the naming are skipped. Errors: kNotFound if neither ClientRaw nor ImposterRaw is
// a folder below `dir`; kIoError if listing fails.
[[nodiscard]] Result<std::vector<SpoofFrame>> list_spoof_frames(const std::filesystem::path& dir);

// An attempt: `frames_per_attempt` consecutive frames of one sequence (a shorter tail is
// dropped; a sequence shorter than that makes one attempt of all its frames). Its score is the
// mean of its frames' scores, as a policy averaging a short burst would decide.
struct SpoofAttempt {
  std::string subject;
  bool live = false;
  std::string type;
  std::vector<std::size_t> frames;  // indices into the frame list
  float score = 0.f;
};
[[nodiscard]] std::vector<SpoofAttempt> make_spoof_attempts(std::span<const SpoofFrame> frames,
                                                            std::span<const float> scores,
                                                            int frames_per_attempt);

// Error rates at a threshold (score >= threshold is accepted as live).
struct SpoofRates {
  float threshold = 0.f;
  std::size_t bona_fide = 0;
  std::size_t attacks = 0;
  double bpcer = 0.0;                   // bona fide rejected / bona fide
  std::map<std::string, double> apcer;  // per attack type: attacks accepted / attacks
  std::map<std::string, std::size_t> attacks_by_type;
  double apcer_worst = 0.0;  // max over attack types (0 without attacks)
};
[[nodiscard]] SpoofRates spoof_rates(std::span<const float> scores, std::span<const char> live,
                                     std::span<const std::string> types, float threshold);

// The highest threshold that rejects at most `max_bpcer` of the bona fide scores (those below
// it), so that as many attacks as possible are refused. Errors: kInvalidArgument without bona
// fide scores, for a NaN score or a max_bpcer outside [0, 1).
[[nodiscard]] Result<float> threshold_for_bpcer(std::span<const float> bona_fide, double max_bpcer);

// ---------------------------------------------------------------------------------------------
// Metrics

// n-fold cross-validated verification accuracy, the LFW protocol.
struct CrossValidation {
  // Per fold (index = fold): the accuracy on the held-out fold, in [0, 1], at the threshold
  // chosen on the other folds.
  std::vector<double> fold_accuracy;
  std::vector<float> fold_threshold;
  double mean_accuracy = 0.0;
  double std_accuracy = 0.0;  // sample standard deviation (divides by folds - 1)
};

// For each fold f, chooses the threshold that maximises accuracy on the pairs of all other folds
// and measures the accuracy on fold f with it. `scores[k]` is the score of `pairs[k]`; folds are
// 0..max(fold) and each must have at least one pair.
// The threshold chosen is exact, not taken from a grid: candidates lie midway between adjacent
// distinct training scores (plus "accept all" and "accept none"); among candidates of equal
// accuracy the lowest wins.
// Errors: kInvalidArgument for mismatched sizes, fewer than two folds, an empty fold, a negative
// fold, a NaN or +infinity score.
[[nodiscard]] Result<CrossValidation> cross_validated_accuracy(std::span<const Pair> pairs,
                                                               std::span<const float> scores);

// Area under the ROC curve, exact: the probability that a random genuine score exceeds a random
// impostor score, ties counting one half (the Mann-Whitney U statistic). O(n log n); the inputs
// are copied and sorted, so 15 million impostor scores take about a second.
// Errors: kInvalidArgument if either set is empty or holds NaN or +infinity.
[[nodiscard]] Result<double> roc_auc(std::span<const float> genuine,
                                     std::span<const float> impostor);

// The operating point of a system run at a target false match rate.
struct OperatingPoint {
  double target_fmr = 0.0;
  // The lowest float threshold t with #{impostor >= t} <= floor(target_fmr * impostor_count).
  // With s the impostor scores in descending order and k = floor(target_fmr * N), that is the
  // next float above s[k] (the (k+1)-th highest impostor score); so every impostor tied with
  // s[k] is rejected, and where a group of equal scores straddles the k-th place the achieved
  // FMR is below the target rather than above it. k = 0 gives the next float above the highest
  // impostor; k >= N gives the lowest finite float (everything but -infinity is accepted).
  float threshold = 0.f;
  double fmr = 0.0;   // achieved: false_matches / impostor_count, <= target_fmr
  double fnmr = 0.0;  // #{genuine < threshold} / genuine_count
  std::uint64_t false_matches = 0;
  std::uint64_t impostor_count = 0;
  std::uint64_t genuine_count = 0;
  // Whether the target is resolvable at all: impostor_count * target_fmr >= 1, i.e. at least one
  // false match is allowed (FMR 1e-5 needs at least 100,000 impostor pairs). Even then an
  // estimate resting on a handful of allowed false matches is noisy: read the threshold together
  // with floor(target_fmr * impostor_count).
  bool resolvable = false;
};

// The operating point at each target FMR (each in (0, 1]). Uses std::nth_element on one copy of
// `impostor`, O(N) per target, no full sort.
// Errors: kInvalidArgument if either set is empty, a target is outside (0, 1], or a score is NaN
// or +infinity.
[[nodiscard]] Result<std::vector<OperatingPoint>> operating_points(
    std::span<const float> genuine, std::span<const float> impostor,
    std::span<const double> target_fmrs);

// One point of a ROC or DET curve.
struct CurvePoint {
  double fmr = 0.0;
  double fnmr = 0.0;
  float threshold = 0.f;
};

// Points of the DET (and ROC) curve: for target FMR 0 (threshold just above the highest
// impostor), 1/N (N impostor scores), and every 10^(j / points_per_decade) between 1/N and 1 (so
// every decade is included), each threshold chosen as in OperatingPoint. Sorted by increasing FMR
// (decreasing threshold); points with equal thresholds are merged. Sorts copies of the inputs once
// (15 million floats: ~1-2 s). Errors: as operating_points, and kInvalidArgument if
// points_per_decade is not in 1..1000.
[[nodiscard]] Result<std::vector<CurvePoint>> det_curve(std::span<const float> genuine,
                                                        std::span<const float> impostor,
                                                        int points_per_decade = 20);

// Everything above from one sort of each score set: for a full evaluation on ~15 million
// impostor scores this is ~2x faster than calling roc_auc, operating_points and det_curve.
struct ScoreSummary {
  std::uint64_t genuine_count = 0;
  std::uint64_t impostor_count = 0;
  double auc = 0.0;  // as roc_auc
  // Equal error rate: at the score threshold where |FMR - FNMR| is smallest (thresholds at every
  // distinct score), the mean of the two. No interpolation.
  double eer = 0.0;
  std::vector<OperatingPoint> operating_points;  // one per target, in the targets' order
  std::vector<CurvePoint> curve;                 // as det_curve
};

// Errors: as operating_points and det_curve.
[[nodiscard]] Result<ScoreSummary> summarize_scores(std::span<const float> genuine,
                                                    std::span<const float> impostor,
                                                    std::span<const double> target_fmrs,
                                                    int points_per_decade = 20);

// ---------------------------------------------------------------------------------------------
// All-pairs scoring

struct AllPairsScores {
  // Dot products of every unordered pair of distinct used rows: same identity -> genuine,
  // different -> impostor. Order: by first row, then second row (deterministic, independent of
  // the number of threads).
  std::vector<float> genuine;
  std::vector<float> impostor;
  std::size_t rows_used = 0;
  std::size_t rows_skipped = 0;  // rows whose identity was negative (no face found)
};

// Scores every pair of rows of an N x dim row-major matrix of L2-normalised embeddings
// (embeddings.size() == identities.size() * dim). identities[r] is the person of row r; a
// negative identity marks a row without an embedding, which is skipped and counted.
// Blocked, vectorised and split over `threads` threads (0 = the hardware's concurrency); for
// N = 5400 and dim = 640 (14.5 million pairs) it takes about 0.6 s of one core with AVX2+FMA
// (picked at run time on x86-64; the portable build is slower). Threads change no result bit.
// Errors: kInvalidArgument for dim == 0 or mismatched sizes; kInternal if memory runs out.
[[nodiscard]] Result<AllPairsScores> all_pairs_scores(std::span<const float> embeddings,
                                                      std::size_t dim,
                                                      std::span<const int> identities,
                                                      int threads = 0);

// Two different people some of whose image pairs score at or above a threshold (eval calibrate
// names them, so that a deployment sees who is taken for whom).
struct MatchedPeople {
  int first = 0;   // identities, first < second
  int second = 0;
  std::size_t pairs = 0;  // their image pairs at or above the threshold
  float highest = 0.f;    // the highest of them, between rows first_row and second_row
  std::size_t first_row = 0;
  std::size_t second_row = 0;
};

// Every pair of different people with an image pair at or above `threshold`, most such pairs
// first (then the highest score, then the identities). Same input as all_pairs_scores; plain
// loops over all N^2/2 pairs, about 0.2 s of one core for the 929 images of a NUAA folder.
// Errors: kInvalidArgument for dim == 0 or mismatched sizes.
[[nodiscard]] Result<std::vector<MatchedPeople>> matched_people(std::span<const float> embeddings,
                                                                std::size_t dim,
                                                                std::span<const int> identities,
                                                                float threshold);

// ---------------------------------------------------------------------------------------------
// Early decision (RecognizerSpec::first_pass_margin)

// Every ordered pair (a, b) of distinct used rows: the first-pass template of a (the probe, no
// mirror images) against the full template of b (enrolled), next to the full templates of both.
struct FirstPassCheck {
  float max_difference = 0.f;  // largest |first-pass score - full score|
  std::size_t genuine = 0;     // ordered pairs of one identity
  std::size_t impostor = 0;    // ordered pairs of two identities
  // Pairs whose first-pass score is within the margin of the threshold: the second pass runs.
  std::size_t genuine_second_pass = 0;
  std::size_t impostor_second_pass = 0;
  // Pairs decided on the first pass differently from the full templates' decision.
  std::size_t changed_decisions = 0;
};

// `first` and `full` are N x dim row-major matrices of unit templates of the same images;
// identities as for all_pairs_scores (negative: no face, skipped). Split over `threads` threads
// (0 = the hardware's concurrency); about 4 s of one core for N = 5400, dim = 640.
// Errors: kInvalidArgument for dim == 0, mismatched sizes or a margin below 0.
[[nodiscard]] Result<FirstPassCheck> check_first_pass(std::span<const float> first,
                                                      std::span<const float> full,
                                                      std::size_t dim,
                                                      std::span<const int> identities,
                                                      float threshold, float margin,
                                                      int threads = 0);

// ---------------------------------------------------------------------------------------------
// Deployment simulation (issue 15): a folder of people enrolled and claimed as the product would

// One image of a deployment folder, as the product analysed it for enrolment or login (quality
// gate on, several faces refused, the full template).
struct DeploymentImage {
  std::string key;  // "<person>/<file>": the person is key_identity(key)
  // The template (dim unit floats) when the image holds exactly one usable face; nullopt
  // otherwise, and `unusable` says why ("no_face", "several_faces", "poor_quality:too_dark",
  // "bad_image", ...).
  std::optional<std::vector<float>> face;
  std::string unusable;
};

struct DeploymentOptions {
  std::size_t enrol = 5;  // images of one enrolment (>= 1)
  // The recogniser's threshold (RecognizerSpec::cosine_threshold, or an override): the operating
  // threshold never goes below it.
  float model_threshold = 0.f;
  // RecognizerSpec::same_person_threshold: every pair of one enrolment's faces must reach it (or
  // the threshold in force, if that is lower), as FaceService::same_person_threshold().
  float same_person_threshold = 0.f;
  // target_fmr and min_users of the population estimate (max_claims is kept as given).
  PopulationOptions population;
  // 0: the estimate is made on every enrolled person and error rates are measured on everyone.
  // K > 0: the estimate is made on K enrolled people drawn at random (`seed`), and error rates
  // are measured only on claims between the others (held out), so that the estimate's predicted
  // FMR can be compared with the FMR measured on people it never saw.
  std::size_t calibrate_people = 0;
  std::uint64_t seed = 1;
  int threads = 1;  // for scoring the claims (0 = the hardware's concurrency)
  // false: no duplicate-face refusal at enrolment (not the product's rule). The duplicate check
  // censors the enrolled population: no two enrolled people score at or above the threshold
  // in force, so the population estimate never sees the look-alikes it should account for;
  // turning it off measures how much that costs the estimate.
  bool check_duplicates = true;
};

// The claims of a deployment decided at one threshold.
struct DeploymentRates {
  float threshold = 0.f;
  // 1:1, the product's rule: a probe against a user is accepted iff its best score over the
  // user's templates reaches the threshold. Impostor: the probe shows someone else.
  std::uint64_t impostor_claims = 0;
  std::uint64_t false_accepts = 0;
  double fmr = 0.0;  // false_accepts / impostor_claims (0 without claims)
  // The same for probes of enrolled people only, the claims a population estimate (made on
  // enrolled people) speaks of; the rest are probes of people refused or with too few images,
  // among them look-alikes refused as duplicates, whose claims are accepted far more often.
  std::uint64_t enrolled_impostor_claims = 0;
  std::uint64_t enrolled_false_accepts = 0;
  double enrolled_fmr = 0.0;
  std::uint64_t genuine_claims = 0;  // probes of enrolled people against themselves
  std::uint64_t false_rejects = 0;
  double fnmr = 0.0;
  // Face-only identification (1:N, rank 1): every probe against the whole gallery.
  std::uint64_t identification_probes = 0;
  // The best user is someone else and reaches the threshold (per probe).
  std::uint64_t false_identifications = 0;
  double false_identification_rate = 0.0;
  std::uint64_t genuine_identification_probes = 0;  // probes of enrolled people
  // The best user is not the probe's person, or is but below the threshold.
  std::uint64_t identification_misses = 0;
  double identification_miss_rate = 0.0;
};

// What became of one person of the folder at enrolment.
struct DeploymentPerson {
  std::string name;
  std::size_t images = 0;
  std::size_t usable = 0;  // images with one usable face
  // "enrolled"; refused: "too_few_images" (fewer usable images than an enrolment needs),
  // "different_people" (two of the faces below the same-person threshold), "duplicate_face"
  // (a face reaches the threshold in force against an already enrolled user).
  std::string status;
  std::string detail;  // for refusals: which faces, which user, what score
  float threshold_in_force = 0.f;  // the duplicate-check threshold when this person came
  bool calibration = false;        // one of the K people of the estimate (held-out runs)
  std::size_t probes = 0;          // usable images not enrolled: claimed against everyone
};

struct DeploymentReport {
  std::size_t people = 0;
  std::size_t images = 0;
  std::size_t usable_images = 0;
  std::map<std::string, std::size_t> unusable;  // by reason
  std::size_t enrolled_people = 0;
  std::size_t enrolled_templates = 0;
  std::map<std::string, std::size_t> refused;  // by status ("too_few_images", ...)
  std::vector<DeploymentPerson> persons;        // in name order
  std::size_t probes = 0;                       // usable images not enrolled (all people)

  // The estimate the operating threshold comes from: every enrolled person, or the K
  // calibration people of a held-out run.
  PopulationEstimate estimate;
  float model_threshold = 0.f;
  // max(model_threshold, estimate.threshold) when the estimate is usable, else model_threshold.
  float operating_threshold = 0.f;
  // The estimate's own false-match rate (ImpostorPopulation::fmr_at) at each threshold: what it
  // predicts the measured fmr will be. nullopt when not usable.
  std::optional<double> predicted_fmr_operating;
  std::optional<double> predicted_fmr_model;

  // Held-out runs: the people whose claims were measured (enrolled, not calibration).
  bool held_out = false;
  std::size_t calibration_people = 0;
  std::size_t measured_people = 0;  // enrolled people measured as targets
  std::size_t measured_probes = 0;  // probes of people not in the calibration set

  DeploymentRates at_operating;
  DeploymentRates at_model;
  // Hindsight: the lowest threshold (to 1/4096) whose measured FMR on these very claims is at
  // most the target, and the FNMR there; nullopt without impostor claims.
  std::optional<float> measured_threshold_for_target;
  std::optional<double> fnmr_at_measured_threshold;
};

// Simulates a deployment on `images` (any order; each person's images are taken in key order,
// people in name order). Enrolment, as FaceService::enroll_templates decides it: a person's first
// `enrol` usable faces, refused if one of them reaches the threshold in force against any
// template of an already enrolled person (duplicate_face; checked first, as the service does),
// or if two of them score below min(same_person_threshold, threshold in force)
// (different_people). The threshold in force is the operating threshold of the people enrolled
// so far (the product's rule; model_threshold below min_users). A person with fewer usable faces
// is not enrolled (too_few_images). Every usable image that was not enrolled is a probe, claimed
// against every enrolled person: impostor if the person differs, genuine if it is the same.
// Then the operating threshold is computed (from everyone enrolled, or the calibration people)
// and the claims are decided at it and at model_threshold.
// Thread-compatible; splits the claims over options.threads threads (no result depends on it).
// Errors: kInvalidArgument for dim == 0, enrol == 0, a template not of dim floats, a
// non-finite threshold, a target FMR outside (0, 1), no image, fewer than 2 enrolled people,
// or calibrate_people not below the number of enrolled people (none left to measure on).
[[nodiscard]] Result<DeploymentReport> simulate_deployment(std::span<const DeploymentImage> images,
                                                           std::size_t dim,
                                                           const DeploymentOptions& options);

// ---------------------------------------------------------------------------------------------
// Embedding cache

// Embeddings of evaluation images (public research data such as LFW, never enrolled users'
// templates, which live only in the encrypted store), keyed by image key.
struct EmbeddingCache {
  std::string recognizer_id;  // RecognizerSpec::id of the recogniser that made the embeddings
  // Anything else that changes embeddings (model file hashes, detector, alignment version):
  // a cache is reused only if both the id and the fingerprint match.
  std::string fingerprint;
  std::size_t dim = 0;  // length of every embedding
  // nullopt: the image was processed and no face was found (so it is not retried).
  std::map<std::string, std::optional<std::vector<float>>> entries;
};

// Writes the cache to `path` (a little binary file with a checksum), through a temporary file
// renamed into place, so a crash never leaves a half-written cache under `path`.
// Errors: kInvalidArgument if an embedding's length is not `dim` or a string is over 64 KiB;
// kIoError.
[[nodiscard]] Status save_embedding_cache(const std::filesystem::path& path,
                                          const EmbeddingCache& cache);

// Reads a cache written by save_embedding_cache. Errors: kNotFound (no file), kModelMismatch (it
// was made by another recogniser id or fingerprint: the caller starts a new cache rather than
// mixing the two), kCorrupt (truncated, bad checksum, not a cache), kIoError. Never crashes or
// allocates unboundedly on a corrupt file.
[[nodiscard]] Result<EmbeddingCache> load_embedding_cache(const std::filesystem::path& path,
                                                          std::string_view recognizer_id,
                                                          std::string_view fingerprint);

// Scores pairs from cached embeddings: the dot product, or -infinity where either image has no
// face. Errors: kNotFound naming the first key absent from the cache; kInvalidArgument if two
// embeddings differ in length.
[[nodiscard]] Result<std::vector<float>> score_pairs(std::span<const Pair> pairs,
                                                     const EmbeddingCache& cache);

// ---------------------------------------------------------------------------------------------
// Plots

// One named curve of a DET plot, with the operating points to mark on it (shape by target FMR:
// circle 1e-3, square 1e-4, triangle 1e-5, diamond any other).
struct DetSeries {
  std::string name;
  std::vector<CurvePoint> points;
  std::vector<OperatingPoint> operating_points;
};

struct PlotOptions {
  std::string title = "DET";
  std::string subtitle;  // optional smaller line under the title (data set, pair counts, ...)
  std::string x_label = "False match rate (FMR)";
  std::string y_label = "False non-match rate (FNMR)";
  int width = 960;  // pixels (PNG) or user units (SVG)
  int height = 720;
  double min_fmr = 1e-6;  // left end of the FMR axis (right end: 1)
  // Bottom end of the FNMR axis (top end: 1); 0 chooses the decade below the lowest non-zero
  // FNMR shown, between 1e-4 and 1e-1.
  double min_fnmr = 0.0;
};

// Writes a DET plot (FNMR against FMR, both log axes) of one or more curves, with grid, axis
// labels, legend and operating-point markers. The format follows the extension: ".svg" (plain
// SVG 1.1, no external fonts or CSS) or ".png" (drawn with OpenCV). Points with FMR or FNMR
// outside the axes are clipped; FNMR 0 is drawn on the bottom edge.
// Errors: kInvalidArgument (no curves, another extension, size under 320x240 or over 8000x8000,
// bad axis limits); kIoError.
[[nodiscard]] Status write_det_plot(const std::filesystem::path& path,
                                    std::span<const DetSeries> curves,
                                    const PlotOptions& options = {});

}  // namespace facelogin::eval
