import Foundation
import Testing
import _ReplicaTestSupport

/// docs/interface.md names every command and every long option of the built `replica`.
///
/// Commands are found from the root down through the SUBCOMMANDS of each `--help`, so a new
/// command or option cannot be left out of the document; `--experimental-dump-help` adds the
/// hidden ones and checks that reading the help texts missed nothing.
@Suite struct InterfaceDocumentTests {
    /// One command's path below `replica` ([] is `replica` itself) and its `--help` text.
    struct CommandHelp: Sendable {
        let path: [String]
        let text: String
        var name: String { (["replica"] + path).joined(separator: " ") }
    }

    /// Options ArgumentParser gives every command; they belong to the library, not to Replica.
    static let generatedOptions: Set<String> = ["--help", "--version", "--experimental-dump-help", "--generate-completion-script"]

    static let documentURL = repositoryRoot.appendingPathComponent("docs/interface.md")

    static let document: Result<String, any Error> = Result { try String(contentsOf: documentURL, encoding: .utf8) }

    /// Every command reachable through the help texts, found once for all tests.
    static let helps: Result<[CommandHelp], any Error> = Result { try discoverCommands() }

    static func discoverCommands() throws -> [CommandHelp] {
        var found: [CommandHelp] = []
        var pending: [[String]] = [[]]
        while let path = pending.first {
            pending.removeFirst()
            let help = try helpText(path)
            found.append(CommandHelp(path: path, text: help))
            pending += subcommands(inHelp: help).map { path + [$0] }
        }
        return found
    }

    /// `replica PATH... --help`, which must succeed.
    static func helpText(_ path: [String]) throws -> String {
        let result = try runProcess(replicaExecutable, path + ["--help"], timeout: 60)
        guard result.status == 0, !result.standardOutput.isEmpty else {
            throw HelpFailure(description: "replica \(path.joined(separator: " ")) --help: status \(result.status), \(result.standardError)")
        }
        return result.standardOutput
    }

    struct HelpFailure: Error, CustomStringConvertible {
        let description: String
    }

    /// The lines of each section of a help text, by heading ("OPTIONS", "SUBCOMMANDS", ...).
    static func sections(_ help: String) -> [(heading: String, lines: [String])] {
        var result: [(heading: String, lines: [String])] = []
        for line in help.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            let isHeading = line.hasSuffix(":") && line.first.map { $0.isUppercase } == true
                && line.dropLast().allSatisfy { $0.isUppercase || $0 == " " }
            if isHeading {
                result.append((String(line.dropLast()), []))
            } else if !result.isEmpty {
                result[result.count - 1].lines.append(line)
            }
        }
        return result
    }

    /// The names listed under SUBCOMMANDS: lines indented by exactly two spaces, up to the first blank line.
    static func subcommands(inHelp help: String) -> [String] {
        sections(help).filter { $0.heading == "SUBCOMMANDS" }.flatMap { section in
            section.lines.prefix { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
                .filter { $0.hasPrefix("  ") && !$0.hasPrefix("   ") }
                .compactMap { $0.split(separator: " ").first.map(String.init) }
        }
    }

    /// Every `--name` in the names column of the option lines (`  --a <a>`, `  -h, --help`, `  --x/--no-x`).
    static func longOptions(inHelp help: String) -> Set<String> {
        var options: Set<String> = []
        for section in sections(help) where section.heading.contains("OPTIONS") || section.heading.contains("FLAGS") {
            for line in section.lines where line.hasPrefix("  -") {
                let names = line.dropFirst(2).components(separatedBy: "  ").first ?? ""
                options.formUnion(longNames(in: names))
            }
        }
        return options
    }

    /// The `--name` words of `text`.
    static func longNames(in text: String) -> [String] {
        let characters = Array(text)
        var names: [String] = []
        var index = 0
        while index + 2 < characters.count {
            if characters[index] == "-", characters[index + 1] == "-", isNameCharacter(characters[index + 2]),
               index == 0 || !isNameCharacter(characters[index - 1]) {
                var end = index + 2
                while end < characters.count, isNameCharacter(characters[end]) { end += 1 }
                names.append(String(characters[index..<end]))
                index = end
            } else {
                index += 1
            }
        }
        return names
    }

    static func isNameCharacter(_ character: Character) -> Bool {
        character.isASCII && (character.isLetter || character.isNumber || character == "-")
    }

    /// Whether `document` holds `phrase` as a whole word (`--resume` is not found in `--resume-from`).
    static func mentions(_ document: String, _ phrase: String) -> Bool {
        var searchRange = document.startIndex..<document.endIndex
        while let found = document.range(of: phrase, range: searchRange) {
            let before = found.lowerBound == document.startIndex ? nil : document[document.index(before: found.lowerBound)]
            let after = found.upperBound == document.endIndex ? nil : document[found.upperBound]
            if !(before.map(isNameCharacter) ?? false) && !(after.map(isNameCharacter) ?? false) { return true }
            searchRange = found.upperBound..<document.endIndex
        }
        return false
    }

    /// The parser's own description of every command, hidden ones included, from `--experimental-dump-help`.
    static func dumpedCommands() throws -> [(path: [String], displayed: Bool, options: [(name: String, displayed: Bool)])] {
        let result = try runProcess(replicaExecutable, ["--experimental-dump-help"], timeout: 60)
        guard result.status == 0,
              let json = try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any],
              let root = json["command"] as? [String: Any] else {
            throw HelpFailure(description: "replica --experimental-dump-help: status \(result.status), not the JSON expected: \(result.standardError)")
        }
        var commands: [(path: [String], displayed: Bool, options: [(name: String, displayed: Bool)])] = []
        func walk(_ command: [String: Any], path: [String], displayed: Bool) {
            let arguments = command["arguments"] as? [[String: Any]] ?? []
            let options = arguments.flatMap { argument -> [(name: String, displayed: Bool)] in
                let names = argument["names"] as? [[String: Any]] ?? []
                let shown = argument["shouldDisplay"] as? Bool ?? true
                return names.filter { $0["kind"] as? String == "long" }.compactMap { $0["name"] as? String }
                    .map { (name: "--" + $0, displayed: shown) }
            }
            commands.append((path, displayed, options))
            for subcommand in command["subcommands"] as? [[String: Any]] ?? [] {
                guard let name = subcommand["commandName"] as? String, name != "help" else { continue }
                walk(subcommand, path: path + [name], displayed: displayed && (subcommand["shouldDisplay"] as? Bool ?? true))
            }
        }
        walk(root, path: [], displayed: true)
        return commands
    }

    @Test func theDocumentNamesEveryCommandTheHelpLists() throws {
        let document = try Self.document.get()
        let helps = try Self.helps.get()
        #expect(helps.contains { $0.path == ["train", "charlm"] }, "the help texts' SUBCOMMANDS were not read: \(helps.map(\.name))")
        let missing = helps.filter { !$0.path.isEmpty && !Self.mentions(document, $0.name) }.map(\.name)
        #expect(missing.isEmpty, "docs/interface.md does not name: \(missing.joined(separator: ", "))")
    }

    @Test func theDocumentNamesEveryLongOptionOfEveryCommand() throws {
        let document = try Self.document.get()
        var missing: [String] = []
        for help in try Self.helps.get() {
            let options = Self.longOptions(inHelp: help.text)
            if Self.subcommands(inHelp: help.text).isEmpty {
                // A command that runs something: its help must have yielded options, or the parsing broke.
                #expect(!options.subtracting(Self.generatedOptions).isEmpty, "no options read from \(help.name) --help:\n\(help.text)")
            }
            for option in options.subtracting(Self.generatedOptions).sorted() where !Self.mentions(document, option) {
                missing.append("\(help.name) \(option)")
            }
        }
        #expect(missing.isEmpty, "docs/interface.md does not mention these options:\n\(missing.joined(separator: "\n"))")
    }

    @Test func theDocumentNamesHiddenCommandsAndOptionsToo() throws {
        let document = try Self.document.get()
        var missing: [String] = []
        for command in try Self.dumpedCommands() {
            let name = (["replica"] + command.path).joined(separator: " ")
            if !command.path.isEmpty && !Self.mentions(document, name) { missing.append(name) }
            for option in command.options where !Self.generatedOptions.contains(option.name) && !Self.mentions(document, option.name) {
                missing.append("\(name) \(option.name)")
            }
        }
        #expect(missing.isEmpty, "docs/interface.md does not mention:\n\(missing.joined(separator: "\n"))")
    }

    @Test func readingTheHelpTextsFindsEveryDisplayedCommandAndOption() throws {
        let helps = try Self.helps.get()
        let dumped = try Self.dumpedCommands().filter { $0.displayed }
        #expect(Set(helps.map(\.path)) == Set(dumped.map(\.path)), "help texts: \(helps.map(\.name)); parser: \(dumped.map(\.path))")
        for command in dumped {
            guard let help = helps.first(where: { $0.path == command.path }) else { continue }
            let expected = Set(command.options.filter { $0.displayed }.map { $0.name }).subtracting(Self.generatedOptions)
            let read = Self.longOptions(inHelp: help.text).subtracting(Self.generatedOptions)
            #expect(read == expected, "\(help.name): read \(read.sorted()) from --help, the parser defines \(expected.sorted())")
        }
    }
}
