package dev.mailchimpheap.consumers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.stream.Stream;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Reads heap.events values as a Java consumer outside this project would.
 *
 * <pre>
 * fingerprint SCHEMA.avsc...
 *     per schema: its Parsing Canonical Form, SchemaNormalization.parsingFingerprint64
 *     as an unsigned 64-bit hex number, and the 10 single-object header bytes
 *     (c3 01, then the fingerprint little-endian) a conformant encoder writes.
 *
 * decode-files [OPTIONS] FILE|DIR...
 *     one record value per file, the file's bytes exactly as the Kafka record
 *     value (no framing); a directory means every regular file in it whose
 *     name does not start with '.', in name order.
 *
 * decode-kafka [OPTIONS] --bootstrap HOST:PORT --topic T [--count N] [--timeout SECONDS]
 *     every partition of T from its beginning, read_committed, no consumer
 *     group (nothing is committed). With --count N > 0: the first N records
 *     (fewer within the timeout, default 60 s, is a failure); with --count 0
 *     (the default): every record below the end offsets seen at start.
 *
 * OPTIONS
 *     --schema FILE   a version of the schema; repeat for every known version.
 *                     The first is the reader schema; the others are added to
 *                     the BinaryMessageDecoder as writer schemas.
 *     --registry URL  Confluent-compatible Schema Registry base URL (default
 *                     $SCHEMA_REGISTRY_URL), for values framed as 0x00 + id.
 *     --expect ENC    every record must be ENC: single-object or confluent
 *                     (say, to prove a registry mode was in use).
 *     --quiet         no per-record lines, only the summary.
 * </pre>
 *
 * <p>A value starting with c3 01 is single-object encoded and decoded with
 * {@link BinaryMessageDecoder}; then, with the writer schema its header
 * names, once more with a {@link GenericDatumReader}, which must consume the
 * value to its last byte. A value starting with 0x00 is Confluent-framed: the
 * writer schema is fetched once per id (GET {registry}/schemas/ids/{id}) and
 * the value decoded with GenericDatumReader(writer, reader), again to its last
 * byte. Anything else fails.
 *
 * <p>Output: one JSON line per record on stdout (unless --quiet), then a line
 * "java: decoded N, failed M" and, when M &gt; 0, "java: first failure: ...". Exit
 * status 0 only when every record decoded (and, from Kafka, enough were read);
 * 1 otherwise; 2 for a usage error.
 */
public final class Main {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final PrintStream OUT = System.out;
  private static final PrintStream ERR = System.err;

  public static void main(String[] args) {
    // Before any logger exists: kafka-clients logs its whole config at INFO.
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
    int code;
    try {
      code = run(args);
    } catch (UsageException e) {
      ERR.println("java: " + e.getMessage());
      ERR.println(
          "usage: fingerprint SCHEMA...\n"
              + "       decode-files [--schema F]... [--registry URL] [--expect ENC] [--quiet] FILE|DIR...\n"
              + "       decode-kafka [--schema F]... [--registry URL] [--expect ENC] [--quiet] --bootstrap B --topic T [--count N] [--timeout S]");
      code = 2;
    } catch (Exception e) {
      ERR.println("java: FAILED: " + e);
      code = 1;
    }
    OUT.flush();
    System.exit(code);
  }

  static final class UsageException extends Exception {
    UsageException(String m) {
      super(m);
    }
  }

  private static int run(String[] args) throws Exception {
    if (args.length == 0) throw new UsageException("no command");
    String cmd = args[0];
    List<String> rest = List.of(args).subList(1, args.length);
    switch (cmd) {
      case "fingerprint":
        return fingerprint(rest);
      case "decode-files":
      case "decode-kafka":
        return decode(cmd, rest);
      default:
        throw new UsageException("unknown command " + cmd);
    }
  }

  // --- fingerprint ------------------------------------------------------------

  private static int fingerprint(List<String> files) throws Exception {
    if (files.isEmpty()) throw new UsageException("fingerprint needs a schema file");
    for (String f : files) {
      Schema s = parse(Path.of(f));
      long fp = SchemaNormalization.parsingFingerprint64(s);
      OUT.println("java schema=" + f);
      OUT.println("java canonical=" + SchemaNormalization.toParsingForm(s));
      OUT.println("java fingerprint64=" + hex64(fp));
      OUT.println("java header=c301" + hex(littleEndian(fp)));
    }
    return 0;
  }

  // --- decode ---------------------------------------------------------------

  private static int decode(String cmd, List<String> args) throws Exception {
    List<Path> schemaFiles = new ArrayList<>();
    List<String> inputs = new ArrayList<>();
    String registry = System.getenv("SCHEMA_REGISTRY_URL");
    String bootstrap = null, topic = null;
    long count = 0;
    long timeoutSeconds = 60;
    boolean quiet = false;
    String expect = null;
    for (int i = 0; i < args.size(); i++) {
      String a = args.get(i);
      switch (a) {
        case "--schema":
          schemaFiles.add(Path.of(value(args, ++i, a)));
          break;
        case "--registry":
          registry = value(args, ++i, a);
          break;
        case "--bootstrap":
          bootstrap = value(args, ++i, a);
          break;
        case "--topic":
          topic = value(args, ++i, a);
          break;
        case "--count":
          count = number(value(args, ++i, a), a);
          break;
        case "--timeout":
          timeoutSeconds = number(value(args, ++i, a), a);
          break;
        case "--quiet":
          quiet = true;
          break;
        case "--expect":
          expect = value(args, ++i, a);
          if (!expect.equals("single-object") && !expect.equals("confluent")) {
            throw new UsageException("--expect wants single-object or confluent, not " + expect);
          }
          break;
        default:
          if (a.startsWith("--")) throw new UsageException("unknown option " + a);
          inputs.add(a);
      }
    }
    Decoder decoder = new Decoder(schemaFiles, registry, expect);
    Tally tally = new Tally(quiet);
    if (cmd.equals("decode-files")) {
      if (inputs.isEmpty()) throw new UsageException("decode-files needs a file or directory");
      for (Path p : expand(inputs)) tally.add(p.toString(), Files.readAllBytes(p), decoder);
      if (tally.decoded + tally.failed == 0) tally.fail("input", "no files to decode in " + inputs);
    } else {
      if (bootstrap == null || topic == null) throw new UsageException("decode-kafka needs --bootstrap and --topic");
      if (!inputs.isEmpty()) throw new UsageException("unexpected arguments " + inputs);
      readKafka(bootstrap, topic, count, Duration.ofSeconds(timeoutSeconds), decoder, tally);
    }
    return tally.finish();
  }

  private static String value(List<String> args, int i, String opt) throws UsageException {
    if (i >= args.size()) throw new UsageException(opt + " needs a value");
    return args.get(i);
  }

  private static long number(String v, String opt) throws UsageException {
    try {
      long n = Long.parseLong(v);
      if (n < 0) throw new NumberFormatException();
      return n;
    } catch (NumberFormatException e) {
      throw new UsageException(opt + " wants a non-negative number, not " + v);
    }
  }

  private static List<Path> expand(List<String> inputs) throws IOException {
    List<Path> out = new ArrayList<>();
    for (String in : inputs) {
      Path p = Path.of(in);
      if (Files.isDirectory(p)) {
        try (Stream<Path> s = Files.list(p)) {
          s.filter(Files::isRegularFile)
              .filter(f -> !f.getFileName().toString().startsWith("."))
              .sorted()
              .forEach(out::add);
        }
      } else {
        out.add(p);
      }
    }
    return out;
  }

  /** Counts, prints and remembers the first failure. */
  static final class Tally {
    final boolean quiet;
    long decoded, failed;
    String firstFailure;

    Tally(boolean quiet) {
      this.quiet = quiet;
    }

    void add(String source, byte[] value, Decoder decoder) {
      try {
        ObjectNode line = decoder.decode(value);
        decoded++;
        if (!quiet) {
          ObjectNode out = JSON.createObjectNode().put("source", source);
          out.setAll(line);
          OUT.println(out);
        }
      } catch (Exception e) {
        fail(source, describe(e));
      }
    }

    void fail(String source, String message) {
      failed++;
      if (firstFailure == null) firstFailure = source + ": " + message;
      if (!quiet) {
        OUT.println(JSON.createObjectNode().put("source", source).put("error", message));
      }
    }

    int finish() {
      OUT.println("java: decoded " + decoded + ", failed " + failed);
      if (firstFailure != null) OUT.println("java: first failure: " + firstFailure);
      return failed == 0 ? 0 : 1;
    }
  }

  /** A failure whose message says it all, without an exception class name. */
  static final class DecodeFailure extends Exception {
    DecodeFailure(String m) {
      super(m);
    }
  }

  private static String describe(Exception e) {
    String m = e.getMessage();
    if (e instanceof DecodeFailure) return m;
    String d = e.getClass().getName() + (m == null ? "" : ": " + m);
    Throwable c = e.getCause();
    if (c != null && c != e) d += " (cause: " + c.getClass().getName() + (c.getMessage() == null ? "" : ": " + c.getMessage()) + ")";
    return d;
  }

  // --- the decoder ----------------------------------------------------------

  static final class Decoder {
    private final Schema reader;
    private final Map<Long, Schema> byFingerprint = new LinkedHashMap<>();
    private final BinaryMessageDecoder<Object> messages;
    private final String registry;
    private final HttpClient http;
    private final Map<Integer, Schema> byId = new HashMap<>();
    private final String expect;

    Decoder(List<Path> schemaFiles, String registry, String expect) throws IOException {
      this.expect = expect;
      Schema first = null;
      for (Path f : schemaFiles) {
        Schema s = parse(f);
        if (first == null) first = s;
        byFingerprint.putIfAbsent(SchemaNormalization.parsingFingerprint64(s), s);
      }
      this.reader = first;
      if (reader != null) {
        messages = new BinaryMessageDecoder<>(GenericData.get(), reader);
        for (Schema s : byFingerprint.values()) {
          if (s != reader) messages.addSchema(s);
        }
      } else {
        messages = null;
      }
      this.registry = registry == null || registry.isBlank() ? null : registry.replaceAll("/+$", "");
      this.http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    }

    ObjectNode decode(byte[] v) throws Exception {
      ObjectNode out = frame(v);
      String enc = out.path("encoding").asText();
      if (expect != null && !expect.equals(enc)) {
        throw new DecodeFailure("decoded, but encoded " + enc + " where every record should be " + expect);
      }
      return out;
    }

    private ObjectNode frame(byte[] v) throws Exception {
      if (v == null) throw new DecodeFailure("null value (tombstone)");
      if (v.length >= 2 && (v[0] & 0xff) == 0xC3 && v[1] == 0x01) return singleObject(v);
      if (v.length >= 1 && v[0] == 0x00) return confluent(v);
      throw new DecodeFailure(
          "neither single-object encoded (c3 01) nor Confluent-framed (00): starts with "
              + hex(java.util.Arrays.copyOf(v, Math.min(v.length, 10))));
    }

    private ObjectNode singleObject(byte[] v) throws Exception {
      if (messages == null) throw new DecodeFailure("single-object value but no --schema given");
      if (v.length < 10) throw new DecodeFailure("single-object value of only " + v.length + " bytes");
      long fp = ByteBuffer.wrap(v, 2, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
      Object record;
      try {
        // The check the issue asks for: Avro's own single-object decoder.
        record = messages.decode(v);
      } catch (org.apache.avro.message.MissingSchemaException e) {
        throw new DecodeFailure(
            e.getClass().getName() + ": " + e.getMessage() + " (header fingerprint " + hex64(fp)
                + ", header bytes " + hex(java.util.Arrays.copyOf(v, 10)) + "; known: " + known() + ")");
      }
      // Avro's decoder ignores bytes after the datum: read again with the
      // writer schema the header names and require the value to end there.
      Schema writer = byFingerprint.get(fp);
      readWhole(writer, v, 10);
      ObjectNode out = JSON.createObjectNode()
          .put("encoding", "single-object")
          .put("fingerprint", hex64(fp))
          .put("writer", writer.getFullName());
      out.set("record", JSON.readTree(GenericData.get().toString(record)));
      return out;
    }

    private ObjectNode confluent(byte[] v) throws Exception {
      if (v.length < 5) throw new DecodeFailure("Confluent-framed value of only " + v.length + " bytes");
      int id = ByteBuffer.wrap(v, 1, 4).order(ByteOrder.BIG_ENDIAN).getInt();
      Schema writer = writerById(id);
      Object record = readWhole(writer, v, 5);
      ObjectNode out = JSON.createObjectNode()
          .put("encoding", "confluent")
          .put("schema_id", id)
          .put("writer_fingerprint", hex64(SchemaNormalization.parsingFingerprint64(writer)));
      out.set("record", JSON.readTree(GenericData.get().toString(record)));
      return out;
    }

    /** Decodes v[offset:] as writer (resolved to the reader schema), to its last byte. */
    private Object readWhole(Schema writer, byte[] v, int offset) throws IOException, DecodeFailure {
      GenericDatumReader<Object> r = new GenericDatumReader<>(writer, reader == null ? writer : reader);
      BinaryDecoder d = DecoderFactory.get().binaryDecoder(v, offset, v.length - offset, null);
      Object record = r.read(null, d);
      if (!d.isEnd()) {
        int left = d.inputStream().available();
        throw new DecodeFailure(left + " bytes after the datum");
      }
      return record;
    }

    private Schema writerById(int id) throws Exception {
      Schema s = byId.get(id);
      if (s != null) return s;
      if (registry == null) throw new DecodeFailure("Confluent-framed value (schema id " + id + ") but no --registry or SCHEMA_REGISTRY_URL");
      URI uri = URI.create(registry + "/schemas/ids/" + id);
      HttpResponse<String> resp = http.send(
          HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(10))
              .header("Accept", "application/vnd.schemaregistry.v1+json, application/json").GET().build(),
          HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
      if (resp.statusCode() != 200) {
        throw new IOException("GET " + uri + ": HTTP " + resp.statusCode() + ": " + abbreviate(resp.body()));
      }
      JsonNode body = JSON.readTree(resp.body());
      String type = body.path("schemaType").asText("AVRO");
      if (!type.equalsIgnoreCase("AVRO")) throw new IOException("schema id " + id + " is " + type + ", not AVRO");
      if (!body.hasNonNull("schema")) throw new IOException("GET " + uri + ": no \"schema\" in " + abbreviate(resp.body()));
      s = new Schema.Parser().parse(body.get("schema").asText());
      byId.put(id, s);
      return s;
    }

    private String known() {
      StringBuilder b = new StringBuilder();
      for (Map.Entry<Long, Schema> e : byFingerprint.entrySet()) {
        if (b.length() > 0) b.append(", ");
        b.append(hex64(e.getKey()));
      }
      return b.toString();
    }
  }

  // --- Kafka ----------------------------------------------------------------

  private static void readKafka(String bootstrap, String topic, long count, Duration timeout, Decoder decoder, Tally tally) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ConsumerConfig.CLIENT_ID_CONFIG, "mailchimp-heap-ci-java-consumer");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    // The mapper produces heap.events in transactions.
    p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.ALLOW_AUTO_CREATE_TOPICS_CONFIG, "false");
    long deadline = System.nanoTime() + timeout.toNanos();
    try (KafkaConsumer<byte[], byte[]> c =
        new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
      List<PartitionInfo> infos = c.partitionsFor(topic, timeout);
      if (infos == null || infos.isEmpty()) {
        tally.fail("kafka", "topic " + topic + " not found on " + bootstrap);
        return;
      }
      List<TopicPartition> parts = new ArrayList<>();
      for (PartitionInfo i : infos) parts.add(new TopicPartition(topic, i.partition()));
      c.assign(parts);
      c.seekToBeginning(parts);
      Map<TopicPartition, Long> end = count == 0 ? c.endOffsets(parts, timeout) : Map.of();
      long read = 0;
      while (true) {
        if (count > 0 ? read >= count : caughtUp(c, end)) break;
        long left = deadline - System.nanoTime();
        if (left <= 0) {
          String want = count > 0 ? count + " records" : "the end offsets " + end;
          tally.fail("kafka", "timed out after " + timeout.toSeconds() + " s with " + read + " records of " + topic + ", expected " + want);
          return;
        }
        for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(Math.min(left / 1_000_000, 500)))) {
          if (count > 0 && read >= count) break;
          read++;
          tally.add(topic + "/" + r.partition() + "@" + r.offset(), r.value(), decoder);
        }
      }
      if (read == 0) tally.fail("kafka", "topic " + topic + " has no records");
    } catch (Exception e) {
      tally.fail("kafka", describe(e));
    }
  }

  private static boolean caughtUp(KafkaConsumer<?, ?> c, Map<TopicPartition, Long> end) {
    for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
      if (c.position(e.getKey()) < e.getValue()) return false;
    }
    return true;
  }

  // --- helpers --------------------------------------------------------------

  private static Schema parse(Path f) throws IOException {
    // One parser per file: versions of one schema share their names.
    return new Schema.Parser().parse(Files.readString(f));
  }

  static String hex64(long v) {
    return String.format(Locale.ROOT, "%016x", v);
  }

  static byte[] littleEndian(long v) {
    return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(v).array();
  }

  static String hex(byte[] b) {
    StringBuilder s = new StringBuilder(b.length * 2);
    for (byte x : b) s.append(String.format(Locale.ROOT, "%02x", x & 0xff));
    return s.toString();
  }

  private static String abbreviate(String s) {
    s = s.replaceAll("\\s+", " ");
    return s.length() > 300 ? s.substring(0, 300) + "..." : s;
  }
}
