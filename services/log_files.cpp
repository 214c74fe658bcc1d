#include "services/log_files.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <limits>

#include "services/log_index.hpp"

namespace corral {

namespace {

using sys_clock = std::chrono::system_clock;

/// Reads of this size keep a page of lines to one or two syscalls.
constexpr std::size_t read_chunk = 64 * 1024;
/// Index records read at once: lookups come in order, so one read serves
/// the lines of many batches.
constexpr std::size_t index_block = 128;

constexpr std::string_view replacement_char = "\xEF\xBF\xBD";

sys_clock::time_point from_unix_ms(std::int64_t ms) {
  return sys_clock::time_point{std::chrono::milliseconds{ms}};
}

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             sys_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------- text

/// Bytes of the character at the front of `s` when it is well-formed
/// UTF-8; otherwise minus the bytes one U+FFFD stands for (the "maximal
/// subpart" Unicode recommends, so a truncated character is one U+FFFD).
int next_char(std::string_view s) {
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned lead = byte(0);
  if (lead < 0x80)
    return 1;
  std::size_t need = 0;
  unsigned lo = 0x80, hi = 0xBF; // range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 1;
  } else if (lead == 0xE0) {
    need = 2, lo = 0xA0; // no overlongs
  } else if (lead == 0xED) {
    need = 2, hi = 0x9F; // no surrogates
  } else if (lead >= 0xE1 && lead <= 0xEF) {
    need = 2;
  } else if (lead == 0xF0) {
    need = 3, lo = 0x90;
  } else if (lead == 0xF4) {
    need = 3, hi = 0x8F; // nothing above U+10FFFF
  } else if (lead >= 0xF1 && lead <= 0xF3) {
    need = 3;
  } else {
    return -1;
  }
  for (std::size_t k = 1; k <= need; ++k) {
    if (k >= s.size() || byte(k) < lo || byte(k) > hi)
      return -static_cast<int>(k);
    lo = 0x80, hi = 0xBF;
  }
  return static_cast<int>(need + 1);
}

/// `s` with every ill-formed sequence replaced by U+FFFD.
std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  while (!s.empty()) {
    auto ascii = std::find_if(s.begin(), s.end(), [](char c) {
      return static_cast<unsigned char>(c) >= 0x80;
    });
    auto run = static_cast<std::size_t>(ascii - s.begin());
    out.append(s.data(), run);
    s.remove_prefix(run);
    if (s.empty())
      break;
    int n = next_char(s);
    if (n > 0)
      out.append(s.data(), static_cast<std::size_t>(n));
    else
      out += replacement_char;
    s.remove_prefix(static_cast<std::size_t>(n > 0 ? n : -n));
  }
  return out;
}

/// What a terminal would show of a line redrawn with `\r` (tqdm): the
/// text after the last `\r`, or the last non-empty text before one.
std::string_view shown(std::string_view raw) {
  for (;;) {
    auto cr = raw.rfind('\r');
    if (cr == std::string_view::npos)
      return raw;
    if (cr + 1 < raw.size())
      return raw.substr(cr + 1);
    raw.remove_suffix(1);
  }
}

bool is_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// ---------------------------------------------------------------- lines

/// A stream's bytes cut into lines. Bytes go in as they are read; a line
/// comes out once its newline is in, or once it is known to be too long,
/// as a piece. Where pieces are cut depends only on the line's bytes, so
/// a reader resuming at a piece's end cuts the same pieces.
class line_cutter {
public:
  /// A line as on disk (without its newline) and the offset past it.
  struct raw_line {
    std::string_view bytes; // valid until the next read_from()
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
  };

  explicit line_cutter(std::uint64_t at = 0) : start_(at) {}

  /// Starts over at `at`, dropping what was buffered.
  void reset(std::uint64_t at) {
    buf_.clear();
    head_ = scanned_ = 0;
    start_ = at;
  }

  /// Reads up to `max` bytes of `fd` at `offset` straight into the buffer
  /// (no copy in between); what pread returned.
  ssize_t read_from(int fd, std::uint64_t offset, std::size_t max) {
    compact();
    auto old = buf_.size();
    buf_.resize(old + max);
    auto n = ::pread(fd, buf_.data() + old, max, static_cast<off_t>(offset));
    buf_.resize(old + static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
    return n;
  }

  /// Gives the buffer's memory back when every byte has been handed out:
  /// a thousand idle runs then hold no read buffers.
  void shed() {
    if (head_ == buf_.size() && buf_.capacity() > 4096) {
      start_ += head_;
      std::string{}.swap(buf_);
      head_ = scanned_ = 0;
    }
  }

  /// The next complete line; with `final`, what is left counts as one.
  std::optional<raw_line> next(bool final) {
    auto pending = buf_.size() - head_;
    if (pending == 0)
      return std::nullopt;
    scanned_ = std::max(scanned_, head_);
    const char* data = buf_.data();
    auto* nl = static_cast<const char*>(
        std::memchr(data + scanned_, '\n', buf_.size() - scanned_));
    if (nl != nullptr) {
      scanned_ = static_cast<std::size_t>(nl - data);
      auto len = scanned_ - head_;
      if (content_length(len) <= max_line_bytes)
        return take(len, 1);
      return take(piece_length(), 0);
    }
    scanned_ = buf_.size();
    // Two more bytes than a line may hold: not even a `\r\n` saves it.
    if (pending >= max_line_bytes + 2)
      return take(piece_length(), 0);
    if (!final)
      return std::nullopt;
    if (content_length(pending) > max_line_bytes)
      return take(piece_length(), 0);
    return take(pending, 0);
  }

  /// Global offset of the first byte not yet handed out in a line.
  std::uint64_t position() const { return start_ + head_; }

private:
  /// A line's length without the `\r` of a `\r\n`.
  std::size_t content_length(std::size_t len) const {
    return len > 0 && buf_[head_ + len - 1] == '\r' ? len - 1 : len;
  }

  /// Where an over-long line is cut: after the last redraw that fits (so
  /// the piece shows a whole redraw), else at the limit but not inside a
  /// UTF-8 character.
  std::size_t piece_length() const {
    const char* at = buf_.data() + head_;
    if (auto* cr
        = static_cast<const char*>(::memrchr(at + 1, '\r', max_line_bytes - 1)))
      return static_cast<std::size_t>(cr - at) + 1;
    std::size_t cut = max_line_bytes;
    if (!is_continuation(at[cut]))
      return cut;
    for (std::size_t back = 1; back <= 3; ++back)
      if (!is_continuation(at[cut - back]))
        return static_cast<unsigned char>(at[cut - back]) >= 0xC0 ? cut - back
                                                                  : cut;
    return cut;
  }

  raw_line take(std::size_t len, std::size_t newline) {
    raw_line line{{buf_.data() + head_, len},
                  start_ + head_,
                  start_ + head_ + len + newline};
    head_ += len + newline;
    return line;
  }

  // Dropping consumed bytes in bulk keeps cutting linear.
  void compact() {
    if (head_ > 0 && head_ >= buf_.size() / 2) {
      buf_.erase(0, head_);
      start_ += head_;
      // A line just taken leaves scanned_ at its newline, before head_.
      scanned_ = scanned_ > head_ ? scanned_ - head_ : 0;
      head_ = 0;
    }
  }

  std::string buf_;
  std::size_t head_ = 0;    // first byte of the pending line in buf_
  std::size_t scanned_ = 0; // no newline in [head_, scanned_)
  std::uint64_t start_ = 0; // global offset of buf_[0]
};

// ---------------------------------------------------------------- times

/// When the bytes of one file were read, from its index. Lookups come in
/// increasing order, so they are answered from a block of records read
/// at once; a jump elsewhere binary-searches the file.
class segment_times {
public:
  /// `index_fd` may be -1 (no index): every byte gets `fallback_ms`.
  segment_times(int index_fd, std::int64_t fallback_ms)
      : fd_(index_fd), fallback_(fallback_ms) {
    refresh();
  }

  /// Picks up the records the shim appended since.
  void refresh() {
    struct stat st {};
    if (fd_ < 0 || ::fstat(fd_, &st) != 0)
      return;
    auto count = static_cast<std::uint64_t>(st.st_size) / log_index_record_size;
    if (count != count_ && !has_next_)
      block_.clear(); // the last block may have grown
    count_ = count;
  }

  void set_fallback(std::int64_t ms) { fallback_ = ms; }

  std::int64_t at(std::uint64_t offset) {
    if (!covers(offset) && !load_for(offset))
      return fallback_;
    auto it = std::upper_bound(
        block_.begin(), block_.end(), offset,
        [](std::uint64_t off, const auto& r) { return off < r.offset; });
    return std::prev(it)->unix_ms;
  }

private:
  bool covers(std::uint64_t offset) const {
    return !block_.empty() && block_.front().offset <= offset
           && (!has_next_ || offset < next_offset_);
  }

  /// Loads the block that holds the record for `offset`; false when no
  /// record covers it (the byte came before the file's first record).
  bool load_for(std::uint64_t offset) {
    if (!block_.empty() && has_next_ && offset >= next_offset_) {
      load(first_ + block_.size());
      if (covers(offset))
        return true;
    }
    auto k = find(offset);
    if (!k)
      return false;
    load(*k);
    return covers(offset);
  }

  /// The last record at or before `offset`.
  std::optional<std::uint64_t> find(std::uint64_t offset) const {
    std::uint64_t lo = 0, hi = count_;
    while (lo < hi) {
      auto mid = lo + (hi - lo) / 2;
      auto r = record(mid);
      if (!r || r->offset <= offset)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo == 0)
      return std::nullopt;
    return lo - 1;
  }

  std::optional<log_index_record> record(std::uint64_t k) const {
    char buf[log_index_record_size];
    auto n = ::pread(fd_, buf, sizeof buf,
                     static_cast<off_t>(k * log_index_record_size));
    if (n != static_cast<ssize_t>(sizeof buf))
      return std::nullopt;
    return parse_log_index_record({buf, sizeof buf});
  }

  void load(std::uint64_t first) {
    block_.clear();
    has_next_ = false;
    first_ = first;
    if (first >= count_)
      return;
    auto n = std::min<std::uint64_t>(index_block + 1, count_ - first);
    std::string buf(n * log_index_record_size, '\0');
    auto got = ::pread(fd_, buf.data(), buf.size(),
                       static_cast<off_t>(first * log_index_record_size));
    if (got < 0)
      return;
    auto records = static_cast<std::size_t>(got) / log_index_record_size;
    for (std::size_t i = 0; i < records; ++i) {
      auto r = parse_log_index_record(std::string_view{buf}.substr(
          i * log_index_record_size, log_index_record_size));
      if (!r)
        break; // a torn record ends what this block can tell
      if (i == index_block) {
        has_next_ = true;
        next_offset_ = r->offset;
      } else {
        block_.push_back(*r);
      }
    }
  }

  int fd_ = -1;
  std::uint64_t count_ = 0;
  std::int64_t fallback_ = 0;
  std::uint64_t first_ = 0; // record number of block_.front()
  std::vector<log_index_record> block_;
  bool has_next_ = false;
  std::uint64_t next_offset_ = 0; // offset of the record after the block
};

log_line make_line(log_stream which, const line_cutter::raw_line& raw,
                   std::int64_t unix_ms) {
  return {.stream = which,
          .t = from_unix_ms(unix_ms),
          .text = valid_utf8(shown(raw.bytes)),
          .begin = raw.begin,
          .end = raw.end};
}

// ---------------------------------------------------------------- reading

/// Lines of one stream from a position on, across the files of one view
/// of the stream (what later writes add is left for the next query).
class stream_lines {
public:
  stream_lines(std::vector<log_segment> segs, log_stream which,
               std::uint64_t from)
      : segs_(std::move(segs)), times_(segs_.size()), which_(which) {
    if (!segs_.empty())
      from = std::max(from, segs_.front().base);
    read_pos_ = from;
    cutter_.reset(from);
  }

  /// The next complete line; nullopt at the end of the view.
  std::optional<log_line> next(bool final) {
    for (;;) {
      if (auto raw = cutter_.next(false))
        return make_line(which_, *raw, unix_ms_at(raw->end - 1));
      if (!read_more())
        break;
    }
    if (auto raw = cutter_.next(final))
      return make_line(which_, *raw, unix_ms_at(raw->end - 1));
    return std::nullopt;
  }

  /// Where the next line would start.
  std::uint64_t position() const { return cutter_.position(); }

private:
  bool read_more() {
    auto seg = std::find_if(segs_.begin(), segs_.end(),
                            [&](auto& s) { return read_pos_ < s.end(); });
    if (seg == segs_.end())
      return false;
    if (read_pos_ < seg->base) {
      // Nothing on disk holds these bytes any more.
      read_pos_ = seg->base;
      cutter_.reset(read_pos_);
    }
    auto want = std::min<std::uint64_t>(read_chunk, seg->end() - read_pos_);
    auto n = cutter_.read_from(seg->data.get(), read_pos_ - seg->base, want);
    if (n <= 0)
      return false;
    read_pos_ += static_cast<std::uint64_t>(n);
    return true;
  }

  std::int64_t unix_ms_at(std::uint64_t offset) {
    auto it = std::upper_bound(
        segs_.begin(), segs_.end(), offset,
        [](std::uint64_t off, const auto& s) { return off < s.base; });
    if (it == segs_.begin())
      return now_unix_ms(); // cannot happen: lines come from the files
    auto i = static_cast<std::size_t>(it - segs_.begin()) - 1;
    if (!times_[i])
      times_[i].emplace(segs_[i].index.get(), segs_[i].mtime_ms);
    return times_[i]->at(offset);
  }

  std::vector<log_segment> segs_;
  std::vector<std::optional<segment_times>> times_;
  log_stream which_;
  line_cutter cutter_;
  std::uint64_t read_pos_ = 0;
};

/// The streams' lines in the order the shim read them: by time, stdout
/// first on a tie. Takes at most `limit` from the fronts.
std::vector<log_line> merge(std::vector<log_line>& out,
                            std::vector<log_line>& err, std::size_t limit) {
  std::vector<log_line> lines;
  std::size_t i = 0, j = 0;
  while (lines.size() < limit && (i < out.size() || j < err.size())) {
    bool take_out = j == err.size() || (i < out.size() && out[i].t <= err[j].t);
    lines.push_back(std::move(take_out ? out[i++] : err[j++]));
  }
  return lines;
}

result<std::vector<log_line>> read_stream(const std::string& dir,
                                          log_stream which, std::uint64_t from,
                                          std::size_t n, bool final) {
  auto segs = open_log_segments(dir, which);
  if (!segs)
    return segs.error();
  stream_lines in{std::move(*segs), which, from};
  std::vector<log_line> lines;
  while (lines.size() < n) {
    auto line = in.next(final);
    if (!line)
      break;
    lines.push_back(std::move(*line));
  }
  return lines;
}

/// Where the last `n` lines of a stream begin: after the (n+1)-th newline
/// from the end. Looks back no further than n + 1 lines of the longest
/// kind, so a stream without newlines costs no more than that.
std::uint64_t tail_start(const std::vector<log_segment>& segs, std::size_t n) {
  if (segs.empty())
    return 0;
  auto pos = segs.back().end();
  auto span = pos - segs.front().base;
  auto budget = std::numeric_limits<std::uint64_t>::max();
  if (n < budget / (max_line_bytes + 2) - 1)
    budget = (n + 1) * (max_line_bytes + 2);
  auto floor = pos - std::min(budget, span);
  std::size_t newlines = 0;
  std::string buf;
  for (auto seg = segs.rbegin(); seg != segs.rend() && pos > floor; ++seg) {
    pos = std::min(pos, seg->end());
    auto lo = std::max(seg->base, floor);
    while (pos > lo) {
      auto len = std::min<std::uint64_t>(read_chunk, pos - lo);
      buf.resize(len);
      auto got = ::pread(seg->data.get(), buf.data(), len,
                         static_cast<off_t>(pos - len - seg->base));
      if (got != static_cast<ssize_t>(len))
        return pos; // unreadable further back: start where we are
      for (auto k = len; k-- > 0;)
        if (buf[k] == '\n' && ++newlines == n + 1)
          return pos - len + k + 1;
      pos -= len;
    }
  }
  return pos;
}

struct stream_tail {
  std::vector<log_line> lines;
  std::uint64_t end = 0; // where the next line will start
};

result<stream_tail> tail_stream(const std::string& dir, log_stream which,
                                std::size_t n, bool final) {
  auto segs = open_log_segments(dir, which);
  if (!segs)
    return segs.error();
  auto start = tail_start(*segs, n);
  stream_lines in{std::move(*segs), which, start};
  std::deque<log_line> last;
  while (auto line = in.next(final)) {
    last.push_back(std::move(*line));
    if (last.size() > n)
      last.pop_front();
  }
  return stream_tail{{std::make_move_iterator(last.begin()),
                      std::make_move_iterator(last.end())},
                     in.position()};
}

// ---------------------------------------------------------------- tailer

/// One stream as the tailer follows it: the file being read, kept open,
/// and the lines cut from it but not yet handed out.
class follower {
public:
  follower(std::string dir, log_stream which, std::uint64_t from)
      : dir_(std::move(dir)), which_(which), cutter_(from), read_pos_(from),
        handed_(from) {}

  /// Reads until `want` lines are ready or the file's end.
  void fill(std::size_t want, bool final) {
    for (;;) {
      if (ready_.size() >= want)
        return;
      if (!seg_ && !locate())
        break;
      if (read_some())
        continue;
      if (!replaced())
        break;
      // The shim writes a file completely before it rotates it: this
      // read takes what came between our last read and the rotation
      // (move_on would find it too, at the cost of a rescan).
      if (read_some())
        continue;
      if (!move_on())
        break;
    }
    cutter_.shed();
    while (final && ready_.size() < want) {
      auto raw = cutter_.next(true);
      if (!raw)
        break;
      ready_.push_back(make_line(which_, *raw, unix_ms_at(raw->end - 1)));
    }
  }

  std::deque<log_line>& ready() { return ready_; }
  std::uint64_t handed() const { return handed_; }
  void hand_out(const log_line& line) { handed_ = line.end; }

private:
  /// An open file and its times.
  struct open_file {
    log_segment seg;
    segment_times times;
    explicit open_file(log_segment s)
        : seg(std::move(s)), times(seg.index.get(), seg.mtime_ms) {}
  };

  /// Opens the file that holds the read position.
  bool locate() {
    auto segs = open_log_segments(dir_, which_);
    if (!segs || segs->empty())
      return false;
    auto& v = *segs;
    auto it = std::upper_bound(
        v.begin(), v.end(), read_pos_,
        [](std::uint64_t pos, const auto& s) { return pos < s.base; });
    if (it == v.begin()) {
      jump(v.front().base); // rotated away before we got to it
    } else {
      --it;
      if (read_pos_ > it->end() && std::next(it) != v.end())
        jump((++it)->base);
    }
    seg_.emplace(std::move(*it));
    return true;
  }

  void jump(std::uint64_t to) {
    read_pos_ = to;
    cutter_.reset(to);
  }

  /// Leaves a file read to its end for the one after it; false when there
  /// is none yet (the shim is between two steps of a rotation).
  bool move_on() {
    auto dev = seg_->seg.dev, ino = seg_->seg.ino;
    prev_ = std::move(seg_);
    seg_.reset();
    if (!locate()) {
      // Nothing on disk (the directory went away): keep what we had.
      seg_ = std::move(prev_);
      prev_.reset();
      return false;
    }
    if (seg_->seg.dev == dev && seg_->seg.ino == ino) {
      prev_.reset();
      return false;
    }
    return true;
  }

  /// True when the open file is no longer the shim's current one (or was
  /// truncated under us), so what it holds now is all it will hold.
  bool replaced() const {
    struct stat cur {
    }, mine{};
    auto path = dir_ + "/" + log_file_name(which_, 0);
    if (::stat(path.c_str(), &cur) != 0)
      return true;
    if (cur.st_dev != seg_->seg.dev || cur.st_ino != seg_->seg.ino)
      return true;
    return ::fstat(seg_->seg.data.get(), &mine) == 0
           && static_cast<std::uint64_t>(mine.st_size)
                  < read_pos_ - seg_->seg.base;
  }

  bool read_some() {
    auto n = cutter_.read_from(seg_->seg.data.get(), read_pos_ - seg_->seg.base,
                               read_chunk);
    if (n <= 0)
      return false;
    read_pos_ += static_cast<std::uint64_t>(n);
    // After the data: the records of everything just read are in.
    seg_->times.refresh();
    seg_->times.set_fallback(now_unix_ms());
    while (auto raw = cutter_.next(false))
      ready_.push_back(make_line(which_, *raw, unix_ms_at(raw->end - 1)));
    if (prev_ && cutter_.position() >= seg_->seg.base)
      prev_.reset();
    return true;
  }

  std::int64_t unix_ms_at(std::uint64_t offset) {
    // A piece cut before the newer file's first byte is timed by the
    // file it ends in.
    if (prev_ && offset < seg_->seg.base)
      return prev_->times.at(offset);
    return seg_->times.at(offset);
  }

  std::string dir_;
  log_stream which_;
  std::optional<open_file> seg_;
  std::optional<open_file> prev_;
  line_cutter cutter_;
  std::uint64_t read_pos_ = 0;
  std::uint64_t handed_ = 0;
  std::deque<log_line> ready_;
};

} // namespace

std::string_view to_string(log_stream s) {
  return s == log_stream::out ? "stdout" : "stderr";
}

std::string format_cursor(log_cursor c) {
  return std::to_string(c.out) + "-" + std::to_string(c.err);
}

std::optional<log_cursor> parse_cursor(std::string_view s) {
  auto dash = s.find('-');
  if (dash == std::string_view::npos)
    return std::nullopt;
  auto number = [](std::string_view digits) -> std::optional<std::uint64_t> {
    std::uint64_t v = 0;
    auto [ptr, err]
        = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (digits.empty() || err != std::errc{}
        || ptr != digits.data() + digits.size())
      return std::nullopt;
    return v;
  };
  auto out = number(s.substr(0, dash));
  auto err = number(s.substr(dash + 1));
  if (!out || !err)
    return std::nullopt;
  return log_cursor{*out, *err};
}

result<log_page> read_logs(const std::string& run_dir, log_selection sel,
                           log_cursor since, std::size_t limit, bool final) {
  // One line more than asked tells whether there are more.
  auto n = limit == std::numeric_limits<std::size_t>::max() ? limit : limit + 1;
  std::vector<log_line> out, err;
  if (sel.out) {
    auto r = read_stream(run_dir, log_stream::out, since.out, n, final);
    if (!r)
      return r.error();
    out = std::move(*r);
  }
  if (sel.err) {
    auto r = read_stream(run_dir, log_stream::err, since.err, n, final);
    if (!r)
      return r.error();
    err = std::move(*r);
  }
  log_page page;
  page.cursor = since;
  auto available = out.size() + err.size();
  page.lines = merge(out, err, limit);
  page.more = available > page.lines.size();
  for (auto& line : page.lines)
    (line.stream == log_stream::out ? page.cursor.out : page.cursor.err)
        = line.end;
  return page;
}

result<log_page> tail_logs(const std::string& run_dir, log_selection sel,
                           std::size_t n, bool final) {
  // Unselected streams are read for their end only, so the cursor
  // follows all of the run from here.
  auto out = tail_stream(run_dir, log_stream::out, sel.out ? n : 0, final);
  if (!out)
    return out.error();
  auto err = tail_stream(run_dir, log_stream::err, sel.err ? n : 0, final);
  if (!err)
    return err.error();
  log_page page;
  page.cursor = {out->end, err->end};
  page.lines
      = merge(out->lines, err->lines, std::numeric_limits<std::size_t>::max());
  if (page.lines.size() > n)
    page.lines.erase(page.lines.begin(),
                     page.lines.end() - static_cast<std::ptrdiff_t>(n));
  return page;
}

struct log_tailer::impl {
  std::array<follower, 2> streams;
  std::deque<log_line> recent;
  std::size_t keep;
};

log_tailer::log_tailer(std::string run_dir, log_cursor from, std::size_t keep)
    : impl_(std::make_unique<impl>(
        impl{{follower{run_dir, log_stream::out, from.out},
              follower{run_dir, log_stream::err, from.err}},
             {},
             keep})) {}

log_tailer::~log_tailer() = default;

std::vector<log_line> log_tailer::poll(std::size_t limit, bool final) {
  auto& [out, err] = impl_->streams;
  out.fill(limit, final);
  err.fill(limit, final);
  std::vector<log_line> lines;
  auto& a = out.ready();
  auto& b = err.ready();
  while (lines.size() < limit && (!a.empty() || !b.empty())) {
    bool take_out = b.empty() || (!a.empty() && a.front().t <= b.front().t);
    auto& from = take_out ? a : b;
    (take_out ? out : err).hand_out(from.front());
    lines.push_back(std::move(from.front()));
    from.pop_front();
  }
  // Only the newest `keep` lines are remembered: under a flood, copying
  // every line of the batch only to drop it again would cost a copy each.
  auto& recent = impl_->recent;
  auto keep = impl_->keep;
  auto first = lines.size() > keep ? lines.size() - keep : 0;
  for (auto i = first; i < lines.size(); ++i)
    recent.push_back(lines[i]);
  while (recent.size() > keep)
    recent.pop_front();
  return lines;
}

log_cursor log_tailer::cursor() const {
  return {impl_->streams[0].handed(), impl_->streams[1].handed()};
}

const std::deque<log_line>& log_tailer::recent() const {
  return impl_->recent;
}

} // namespace corral
